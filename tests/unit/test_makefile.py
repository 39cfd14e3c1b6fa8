"""`make` and `make help` list every documented target (the `## target: text` lines)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _documented() -> list[str]:
    return re.findall(r"^## ([a-z][a-z-]*): ", (ROOT / "Makefile").read_text(), flags=re.M)


@pytest.mark.parametrize("args", [[], ["help"]], ids=["plain make", "make help"])
def test_make_lists_every_documented_target(args: list[str]) -> None:
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  ([a-z][a-z-]*) ", proc.stdout, flags=re.M)
    assert listed == _documented()
    assert {"help", "test", "serve", "demo"} <= set(listed)
