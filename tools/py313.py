"""A runnable CPython 3.13 (the Lambda runtime hexcast deploys to) without a system install.

``python -m tools.py313 [args...]`` runs CPython 3.13 with ``args``; the first
run fetches it. ``python -m tools.py313 --fetch`` fetches it and the AWS SDK
the Lambda runtime provides (:func:`runtime_sdk`); ``--path`` prints the
command prefix, or exits 1 when it is not available (offline and not cached).

How: the Debian *trixie* packages of CPython 3.13 and the shared libraries it
links are downloaded from ``deb.debian.org``, each checked against the SHA-256
of trixie's ``Packages`` index (fetched over HTTP; its Release signature is not
checked), and unpacked with ``dpkg-deb -x``
into ``~/.cache/hexcast-py313`` (``HEXCAST_PY313_DIR`` overrides). Trixie's
interpreter needs glibc >= 2.38, newer than bookworm's, so it is started through
the unpacked trixie dynamic loader with ``--library-path`` pointing into the
cache; nothing outside the cache is touched. Fetching is idempotent: a complete
cache (its ``.complete`` stamp) is used as is.

Used by ``benchmarks/cold_import.py`` to time the deployed zip on the runtime it
runs on, and by ``deploy/package.py`` (``--compile``) to byte-compile the zip
with that runtime's magic number.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
ARCH = "amd64"
# The interpreter, its standard library and the shared libraries they load
# (the stdlib's extension modules included: ssl, sqlite3, lzma, bz2, ctypes, ...).
PACKAGES = (
    "python3.13-minimal",
    "libpython3.13-minimal",
    "libpython3.13-stdlib",
    "libc6",
    "libgcc-s1",
    "libexpat1",
    "zlib1g",
    "libffi8",
    "libssl3t64",
    "libzstd1",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libmpdec4",
    "libuuid1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8t64",
    "libdb5.3t64",
    "media-types",
)
_STAMP = ".complete"
#: What the Lambda runtime provides beside the zip (``chalice package`` leaves
#: them out): the AWS SDK at the versions requirements-dev.txt pins, plus the
#: two small packages it needs that the zip does not carry.
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath")


def cache_dir() -> Path:
    env = os.environ.get("HEXCAST_PY313_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hexcast-py313"


def command(root: Path | None = None) -> list[str]:
    """The argv prefix that starts the cached CPython 3.13 (whether or not it is fetched)."""
    root = root or cache_dir()
    # trixie is merged-/usr: every library, the loader included, is under usr/lib.
    libs = root / "usr" / "lib" / "x86_64-linux-gnu"
    return [
        str(libs / "ld-linux-x86-64.so.2"),
        "--library-path",
        str(libs),
        str(root / "usr" / "bin" / "python3.13"),
    ]


def environment(root: Path | None = None) -> dict[str, str]:
    """Variables the interpreter needs: its prefix is the cache, not /usr."""
    return {"PYTHONHOME": str((root or cache_dir()) / "usr")}


def available(root: Path | None = None) -> bool:
    return ((root or cache_dir()) / _STAMP).is_file()


def _parse_index(text: str) -> dict[str, dict[str, str]]:
    """``Packages`` stanzas keyed by package name: {"Filename": ..., "SHA256": ..., ...}."""
    out: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ": " in line:
                key, value = line.split(": ", 1)
                fields[key] = value
        if "Package" in fields and "Filename" in fields:
            out[fields["Package"]] = fields
    return out


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    return data


def fetch(root: Path | None = None, log: bool = True) -> Path:
    """Download, verify and unpack the packages into ``root`` unless already done."""
    root = root or cache_dir()
    if available(root):
        return root
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is needed to unpack the CPython 3.13 packages")
    index_url = f"{MIRROR}/dists/{SUITE}/main/binary-{ARCH}/Packages.xz"
    if log:
        print(f"py313: reading {index_url}", file=sys.stderr)
    index = _parse_index(lzma.decompress(_get(index_url)).decode("utf-8"))
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in PACKAGES:
            entry = index.get(name)
            if entry is None:
                raise RuntimeError(f"{name} is not in {SUITE}'s index")
            data = _get(f"{MIRROR}/{entry['Filename']}")
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["SHA256"]:
                raise RuntimeError(f"{name}: sha256 {digest} != index {entry['SHA256']}")
            deb = Path(tmp) / f"{name}.deb"
            deb.write_bytes(data)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            if log:
                print(f"py313: {name} {entry['Version']} ok", file=sys.stderr)
    env = {**os.environ, **environment(root)}
    # Debian byte-compiles the standard library when it installs it (py3compile);
    # unpacking skips that, and a stdlib without .pyc would make every timing slow.
    # (No -j: a worker process would start python3.13 without the loader and fail.)
    stdlib = root / "usr" / "lib" / "python3.13"
    subprocess.run([*command(root), "-m", "compileall", "-q", str(stdlib)], env=env, check=True)
    check = subprocess.run(
        [*command(root), "-c", "import ssl, sqlite3, lzma, bz2, ctypes, decimal, zlib, sys; print(sys.version)"],
        env=env,
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise RuntimeError(f"the unpacked CPython 3.13 does not start: {check.stderr.strip()}")
    (root / _STAMP).write_text(check.stdout)
    return root


def _pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` from requirements-dev.txt where pinned, else the name."""
    req = Path(__file__).resolve().parent.parent / "requirements-dev.txt"
    pinned = {}
    for line in req.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pinned[name.strip().lower()] = version.strip()
    return [f"{n}=={pinned[n]}" if n in pinned else n for n in names]


def runtime_sdk(root: Path | None = None, log: bool = True) -> Path:
    """A directory holding boto3 and botocore for CPython 3.13, byte-compiled
    (a stand-in for the runtime's own copy, which ``/var/task`` does not hold):
    pure wheels fetched with this interpreter's pip, unpacked, compiled by
    3.13. Idempotent, like :func:`fetch`."""
    root = fetch(root, log)
    sdk = root / "runtime-sdk"
    if (sdk / _STAMP).is_file():
        return sdk
    shutil.rmtree(sdk, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--python-version", "3.13", "--dest", tmp,
                        *_pins(RUNTIME_SDK)], check=True)
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(sdk)
            if log:
                print(f"py313: {wheel.name} ok", file=sys.stderr)
    env = {**os.environ, **environment(root)}
    subprocess.run([*command(root), "-m", "compileall", "-q", str(sdk)], env=env, check=True)
    (sdk / _STAMP).write_text(" ".join(_pins(RUNTIME_SDK)))
    return sdk


def main(argv: list[str]) -> int:
    if argv[:1] == ["--path"]:
        if not available():
            return 1
        print(" ".join(command()))
        return 0
    if argv[:1] == ["--fetch"]:
        print(runtime_sdk())
        return 0
    root = fetch()
    env = {**os.environ, **environment(root)}
    return subprocess.run([*command(root), *argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
