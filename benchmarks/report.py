"""A measured figure beside its baseline, and the table that prints them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """``value`` (ours) and ``baseline_value``, both measured in this run.

    Lower is better for every figure here (seconds, units, dollars), so the
    ratio is ``baseline / ours``: 3.0 means three times faster or cheaper.
    ``target`` is a minimum ratio; ``target_max`` a maximum for ``value``.
    """

    section: str
    name: str
    value: float
    baseline: str
    baseline_value: float
    unit: str = ""
    target: float | None = None
    target_max: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.value == 0:
            return math.inf if self.baseline_value else 1.0
        return self.baseline_value / self.value

    @property
    def met(self) -> bool | None:
        checks = []
        if self.target is not None:
            checks.append(self.ratio >= self.target)
        if self.target_max is not None:
            checks.append(self.value <= self.target_max)
        return all(checks) if checks else None

    def target_text(self) -> str:
        parts = []
        if self.target is not None:
            parts.append(f"ratio ≥ {self.target:g}")
        if self.target_max is not None:
            parts.append(f"≤ {fmt(self.target_max, self.unit)}")
        if not parts:
            return ""
        return " & ".join(parts) + ("  met" if self.met else "  MISSED")

    def as_json(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["met"] = self.met
        return d


def fmt(v: float, unit: str) -> str:
    if unit == "$":
        return f"${v:.4f}" if v < 1 else f"${v:,.2f}"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"
    if unit == "ms":
        return f"{v:.0f} ms"
    if abs(v) >= 100:
        return f"{v:,.0f}{(' ' + unit) if unit else ''}"
    return f"{v:.3g}{(' ' + unit) if unit else ''}"


def table(figures: list[Figure]) -> str:
    rows = [("", "figure", "ours", "baseline", "", "ratio", "target")]
    for f in figures:
        rows.append(
            (
                f.section,
                f.name,
                fmt(f.value, f.unit),
                f.baseline,
                fmt(f.baseline_value, f.unit),
                f"{f.ratio:.2f}×" if math.isfinite(f.ratio) else "∞",
                f.target_text(),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if k not in (2, 4, 5) else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    notes = [f"  [{f.section}] {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + ([""] + notes if notes else []))


def dump(figures: list[Figure], path: str) -> None:
    with open(path, "w") as fh:
        json.dump([f.as_json() for f in figures], fh, indent=2)
