"""A measured figure beside its baseline, the table that prints them, and
the verdict on each figure's target.

Timings are reported as the median of several runs with their min–max
(:class:`Sample`); a figure carries that spread in ``spread`` /
``baseline_spread``. A figure declares a target with ``target`` (a minimum
ratio) and/or ``target_max`` (a maximum for ``value``); :func:`verdict`
judges it only on a full-size run: on ``--quick`` inputs, or on a figure
marked ``full_size=False``, the verdict is "not run at full size".
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")

MET, MISSED, NOT_FULL = "met", "MISSED", "not run at full size"


@dataclass(frozen=True)
class Sample:
    """The median of ``runs`` measurements and their min and max."""

    median: float
    lo: float
    hi: float
    runs: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Sample:
        xs = sorted(values)
        if not xs:
            raise ValueError("a sample needs at least one measurement")
        return cls(statistics.median(xs), xs[0], xs[-1], len(xs))

    def scaled(self, k: float) -> Sample:
        """The same sample in another unit (``k`` > 0), e.g. per item."""
        return Sample(self.median * k, self.lo * k, self.hi * k, self.runs)

    @property
    def spread(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    def text(self, unit: str = "") -> str:
        return f"{fmt(self.median, unit)} ({fmt_range(self.spread, unit)}, median of {self.runs})"


@dataclass(frozen=True)
class Timed(Generic[T]):
    """Wall and process-CPU samples of repeated calls, and the last result."""

    wall: Sample
    cpu: Sample
    result: T


def timed(fn: Callable[[], T], repeat: int, before: Callable[[], None] | None = None) -> Timed[T]:
    """Call ``fn`` ``repeat`` times (``before`` untimed ahead of each call)."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    wall: list[float] = []
    cpu: list[float] = []
    out: T | None = None
    for _ in range(repeat):
        if before is not None:
            before()
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timed(Sample.of(wall), Sample.of(cpu), out)  # type: ignore[arg-type]  # set: repeat >= 1


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, Timed]:
    """Each of ``fns`` timed ``repeat`` times, taking turns (a, b, a, b, ...)
    so that all of them see the same load on a shared machine."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    out: dict[str, object] = {}
    for _ in range(repeat):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            out[k] = fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: Timed(Sample.of(wall[k]), Sample.of(cpu[k]), out[k]) for k in fns}


@dataclass
class Figure:
    """``value`` (ours) and ``baseline_value``, both measured in this run.

    Lower is better for every figure here (seconds, units, dollars), so the
    ratio is ``baseline / ours``: 3.0 means three times faster or cheaper.
    ``target`` is a minimum ratio; ``target_max`` a maximum for ``value``.
    ``spread``/``baseline_spread``: (min, max) over the runs whose median is
    the value. ``full_size``: False when the figure is measured on smaller
    inputs than its target is stated for (its target is then not judged);
    None: as the run (``--quick`` or not).
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
    spread: tuple[float, float] | None = None
    baseline_spread: tuple[float, float] | None = None
    full_size: bool | None = None

    @property
    def ratio(self) -> float:
        if self.value == 0:
            return math.inf if self.baseline_value else 1.0
        return self.baseline_value / self.value

    @property
    def has_target(self) -> bool:
        return self.target is not None or self.target_max is not None

    @property
    def met(self) -> bool | None:
        """Whether the figure meets its target (None: it has none), whatever the input size."""
        checks = []
        if self.target is not None:
            checks.append(self.ratio >= self.target)
        if self.target_max is not None:
            checks.append(self.value <= self.target_max)
        return all(checks) if checks else None

    def target_spec(self) -> str:
        parts = []
        if self.target is not None:
            parts.append(f"ratio ≥ {self.target:g}")
        if self.target_max is not None:
            parts.append(f"≤ {fmt(self.target_max, self.unit)}")
        return " & ".join(parts)

    def target_text(self, quick: bool = False) -> str:
        spec = self.target_spec()
        return f"{spec}  {verdict(self, quick)}" if spec else ""

    def as_json(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["met"] = self.met
        return d


def verdict(f: Figure, quick: bool) -> str:
    """``met``, ``MISSED`` or ``not run at full size`` ("" without a target)."""
    if not f.has_target:
        return ""
    full = (not quick) if f.full_size is None else (f.full_size and not quick)
    if not full:
        return NOT_FULL
    return MET if f.met else MISSED


def verdict_lines(figures: list[Figure], quick: bool, declared: dict[str, str], ran: Iterable[str]) -> list[str]:
    """One line per target: every figure that declares one, then each target
    of ``declared`` (section → target) whose section gave no figure with a
    target in this run (not run, or run on smaller inputs)."""
    lines = []
    judged = set()
    for f in figures:
        if not f.has_target:
            continue
        judged.add(f.section)
        lines.append(f"[{f.section}] {verdict(f, quick)}: {f.name} = {fmt(f.value, f.unit)}"
                     f"{'' if f.target is None else f' (ratio {f.ratio:.2f}×)'}; target {f.target_spec()}")
    ran = set(ran)
    for section, target in declared.items():
        if section not in judged:
            why = NOT_FULL if section in ran else "not run"
            lines.append(f"[{section}] {why}: {target}")
    return lines


def fmt(v: float, unit: str) -> str:
    if unit == "$":
        return f"${v:.4f}" if v < 1 else f"${v:,.2f}"
    if unit == "s":
        if v >= 1:
            return f"{v:.1f} s"
        return f"{v * 1000:.3g} ms" if v < 0.1 else f"{v * 1000:.0f} ms"
    if unit == "ms":
        return f"{v:.0f} ms"
    if abs(v) >= 100:
        return f"{v:,.0f}{(' ' + unit) if unit else ''}"
    return f"{v:.3g}{(' ' + unit) if unit else ''}"


def fmt_range(spread: tuple[float, float], unit: str) -> str:
    """``lo–hi`` with the unit once: ``40.1–45.3 µs``, ``38–52 ms``."""
    lo, hi = fmt(spread[0], unit), fmt(spread[1], unit)
    a, _, ua = lo.partition(" ")
    b, _, ub = hi.partition(" ")
    return f"{a}–{b} {ua}".rstrip() if ua == ub else f"{lo}–{hi}"


def _cell(v: float, spread: tuple[float, float] | None, unit: str) -> str:
    return fmt(v, unit) + (f" ({fmt_range(spread, unit)})" if spread else "")


def table(figures: list[Figure], quick: bool = False) -> str:
    rows = [("", "figure", "ours (min–max)", "baseline", "", "ratio", "target")]
    for f in figures:
        rows.append(
            (
                f.section,
                f.name,
                _cell(f.value, f.spread, f.unit),
                f.baseline,
                _cell(f.baseline_value, f.baseline_spread, f.unit),
                f"{f.ratio:.2f}×" if math.isfinite(f.ratio) else "∞",
                f.target_text(quick),
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


def dump(figures: list[Figure], path: str, meta: dict | None = None) -> None:
    """The figures as JSON; with ``meta`` (machine, load, versions), an object
    ``{"meta": ..., "figures": [...]}``, else the list alone."""
    body: object = [f.as_json() for f in figures]
    if meta is not None:
        body = {"meta": meta, "figures": body}
    with open(path, "w") as fh:
        json.dump(body, fh, indent=2)
