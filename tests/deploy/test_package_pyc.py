"""``make package`` byte-compiles the zip with the runtime's CPython 3.13
(``deploy.package.compile_zip``): every module gets an ``unchecked-hash``
``.pyc`` that 3.13 uses as unpacked, whatever the sources' mtimes, without
writing anything. Needs the cached CPython 3.13 of ``tools/py313.py``
(``python -m tools.py313 --fetch``); skipped without it — no network here."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from deploy.package import PackageError, compile_zip
from tools import py313

needs_313 = pytest.mark.skipif(not py313.available(), reason="no cached CPython 3.13: python -m tools.py313 --fetch")


def _zip(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("app.py", "import pkg.mod\nVALUE = pkg.mod.VALUE\n")
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/mod.py", "VALUE = 42\n")
        zf.writestr("pkg/data.json", "{}")
    return path


@needs_313
def test_compile_zip_adds_unchecked_hash_pyc_that_313_loads_as_unpacked(tmp_path):
    path = _zip(tmp_path)
    assert compile_zip(path, "python3.13") == 3
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        pyc = zf.read("pkg/__pycache__/mod.cpython-313.pyc")
        zf.extractall(tmp_path / "task")
    assert {"app.py", "pkg/data.json", "__pycache__/app.cpython-313.pyc", "pkg/__pycache__/__init__.cpython-313.pyc"} <= names
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # PEP 552: hash-based, source not checked
    task = tmp_path / "task"
    os.utime(task / "pkg" / "mod.py", (0, 0))  # an mtime unlike the compiled one: still used
    env = {**os.environ, **py313.environment(), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(task)}
    proc = subprocess.run([*py313.command(), "-v", "-c", "import app; print(app.VALUE)"], cwd=task, env=env,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "42"
    assert f"code object from '{task}/pkg/__pycache__/mod.cpython-313.pyc'" in proc.stderr
    # compiling again adds nothing (the .pyc are there)
    assert compile_zip(path, "python3.13") == 0


def test_compile_zip_refuses_another_runtime(tmp_path):
    with pytest.raises(PackageError, match="python3.12"):
        compile_zip(_zip(tmp_path), "python3.12")
