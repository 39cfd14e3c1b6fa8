"""The benchmark report's verdict per target and its median with min–max
(benchmarks/report.py, benchmarks/run.py): no timing is measured here."""

from __future__ import annotations

import sys
import types

import pytest

import benchmarks
from benchmarks import run as bench_run
from benchmarks.report import MET, MISSED, NOT_FULL, Figure, Sample, fmt_range, interleaved, table, timed, verdict, verdict_lines


def fig(value: float, **kw) -> Figure:
    return Figure("d", "cold import", value, "bare", 0.01, unit="s", **kw)


def test_sample_is_the_median_with_min_and_max() -> None:
    s = Sample.of([3.0, 1.0, 10.0, 2.0, 4.0])
    assert (s.median, s.lo, s.hi, s.runs) == (3.0, 1.0, 10.0, 5)
    assert Sample.of([1.0, 2.0]).median == 1.5
    per = s.scaled(0.5)
    assert (per.median, per.spread, per.runs) == (1.5, (0.5, 5.0), 5)
    with pytest.raises(ValueError):
        Sample.of([])


def test_timed_and_interleaved_count_every_run() -> None:
    calls: list[str] = []

    def call() -> int:
        calls.append("x")
        return len(calls)

    got = timed(call, 3)
    assert got.result == 3 and got.wall.runs == 3 and got.cpu.runs == 3
    calls.clear()
    both = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 2)
    assert calls == ["a", "b", "a", "b"]
    assert both["a"].wall.runs == 2 and both["a"].wall.lo <= both["a"].wall.median <= both["a"].wall.hi
    with pytest.raises(ValueError):
        timed(lambda: 1, 0)


@pytest.mark.parametrize(
    "figure, quick, want",
    [
        (fig(0.3, target_max=0.4), False, MET),
        (fig(0.4, target_max=0.4), False, MET),
        (fig(0.5, target_max=0.4), False, MISSED),
        (fig(0.5, target_max=0.4), True, NOT_FULL),
        (fig(0.3, target_max=0.4, full_size=False), False, NOT_FULL),
        (fig(0.3, target_max=0.4, full_size=True), True, NOT_FULL),
        (fig(0.005, target=2.0), False, MET),  # ratio 0.01 / 0.005 = 2
        (fig(0.006, target=2.0), False, MISSED),
        (fig(0.001, target=2.0, target_max=0.0005), False, MISSED),  # both must hold
        (fig(0.5), False, ""),
    ],
)
def test_verdict(figure: Figure, quick: bool, want: str) -> None:
    assert verdict(figure, quick) == want


def test_verdict_lines_cover_every_declared_target() -> None:
    figures = [fig(0.5, target_max=0.4), Figure("e", "other", 1.0, "b", 1.0)]
    declared = {"d": "import ≤ 400 ms", "e": "≥ 20,000/s", "f": "≤ 10 µs"}
    lines = verdict_lines(figures, False, declared, ran=["d", "e"])
    assert lines[0].startswith(f"[d] {MISSED}: cold import = 500 ms") and "target ≤ 400 ms" in lines[0]
    assert lines[1:] == [f"[e] {NOT_FULL}: ≥ 20,000/s", "[f] not run: ≤ 10 µs"]  # e ran without a judged figure
    assert not any("import ≤ 400 ms" in line for line in lines)  # d's own figure stands for its target


def test_table_shows_the_spread() -> None:
    text = table([fig(0.042, spread=(0.040, 0.045), baseline_spread=(0.009, 0.012), target_max=0.4)])
    assert "42 ms (40–45 ms)" in text and "10 ms (9–12 ms)" in text and "≤ 400 ms  met" in text
    assert fmt_range((0.5, 2.0), "s") == "500 ms–2.0 s"


@pytest.fixture
def section_d(monkeypatch: pytest.MonkeyPatch):
    """Section (d) replaced by a stub returning the given figures."""

    def use(*figures: Figure) -> None:
        stub = types.ModuleType("benchmarks.cold_import")
        stub.run = lambda *a, **kw: list(figures)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "benchmarks.cold_import", stub)
        monkeypatch.setattr(benchmarks, "cold_import", stub, raising=False)

    return use


@pytest.mark.parametrize(
    "value, argv, code",
    [
        (0.5, ["--strict"], 1),  # missed: --strict fails the run
        (0.5, [], 0),
        (0.5, ["--strict", "--quick"], 0),  # quick inputs are not judged
        (0.3, ["--strict"], 0),
    ],
)
def test_strict_exits_1_only_when_a_target_is_missed(section_d, capsys, value: float, argv: list[str], code: int) -> None:
    section_d(fig(value, target_max=0.4))
    assert bench_run.main(["--only", "d", *argv]) == code
    out = capsys.readouterr().out
    assert "verdict per target:" in out and "load average" in out
    assert "[f] not run:" in out  # every declared target gets a line
