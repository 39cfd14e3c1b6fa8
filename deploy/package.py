"""``make package STAGE=dev``: one CloudFormation (SAM) template that creates
everything, and the deployment zip, in ``dist/<stage>/``.

1. render ``dist/<stage>/resources.json`` and ``merge.json`` from the code
   (:mod:`deploy.render_resources`);
2. ``chalice package --stage <stage> --merge-template dist/<stage>/merge.json
   dist/<stage>`` through :mod:`deploy.chalice_cli` (runtime pinned, wheels
   for its ABI) → ``sam.json`` and ``deployment.zip``;
3. check the result: every function on the pinned runtime and wired by the
   merge (Chalice named its functions as the render expected), no literal
   region or account, the zip's native wheels built for the runtime. Any
   "Could not install dependencies" fails the build;
4. byte-compile the zip (``--compile``, what ``make package`` does unless
   ``PYC=0``): every ``.py`` in it gets its ``__pycache__/*.cpython-313.pyc``,
   compiled by CPython 3.13 itself (:mod:`tools.py313`) in ``unchecked-hash``
   mode — valid whatever mtimes unzipping gives the sources, and never
   rewritten, which a read-only ``/var/task`` could not do anyway. Without
   them every cold start compiles every module it imports (BENCHMARKS (d)).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from deploy import chalice_cli
from deploy.render_resources import ROOT, function_environment, queue_consumers, render

#: Packages with compiled code that must match the runtime's ABI.
NATIVE_PACKAGES = ("numpy", "shapely", "h3", "markupsafe", "charset_normalizer")
#: The region ``chalice package`` is given when none is configured: the
#: template uses ``${AWS::Region}`` everywhere, which the check below holds.
PLACEHOLDER_REGION = "us-east-1"


class PackageError(RuntimeError):
    pass


def wheel_tags(zip_path: Path) -> dict[str, list[str]]:
    """Distribution name → its ``WHEEL`` ``Tag:`` lines, for every
    ``*.dist-info/WHEEL`` in the zip."""
    out: dict[str, list[str]] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "WHEEL":
                dist = parts[0][: -len(".dist-info")].rsplit("-", 1)[0]
                text = zf.read(name).decode()
                out[chalice_cli.normalize(dist).replace("-", "_")] = [
                    line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")
                ]
    return out


def tag_runs_on(tag: str, lambda_runtime: str) -> bool:
    """Does a wheel tag (``cp313-cp313-manylinux_2_28_x86_64``) run on the
    runtime (its ABI, glibc ≤ 2.34, x86_64)? Pure wheels (``py3-none-any``) do."""
    _, abi = chalice_cli.RUNTIMES[lambda_runtime]
    interpreter, wheel_abi, platform = tag.split("-")
    if platform == "any":
        return wheel_abi == "none" and interpreter.startswith("py")
    if wheel_abi not in (abi, "abi3") or not platform.endswith(f"_{chalice_cli.MACHINE}"):
        return False
    if wheel_abi == "abi3" and int(interpreter[3:] or 0) > int(abi[3:]):
        return False
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", platform)
    if m:
        return (int(m.group(1)), int(m.group(2))) <= (2, max(chalice_cli.GLIBC_MINORS))
    return platform in (f"manylinux2014_{chalice_cli.MACHINE}", f"manylinux2010_{chalice_cli.MACHINE}",
                        f"manylinux1_{chalice_cli.MACHINE}")


def check_zip(zip_path: Path, lambda_runtime: str) -> dict[str, list[str]]:
    """Every wheel in the zip runs on the runtime; the native ones are there."""
    tags = wheel_tags(zip_path)
    problems = [f"{dist}: not in the zip" for dist in NATIVE_PACKAGES if dist not in tags]
    for dist, dist_tags in sorted(tags.items()):
        if not any(tag_runs_on(t, lambda_runtime) for t in dist_tags):
            problems.append(f"{dist}: {', '.join(dist_tags)} does not run on {lambda_runtime}")
    if problems:
        raise PackageError(f"{zip_path}:\n  " + "\n  ".join(problems))
    return tags


def prune_chalice_cache(keep: int = 3) -> None:
    """Chalice keeps one ~35 MB zip per (requirements, code) hash in
    ``.chalice/deployments``; keep the newest few."""
    cache = ROOT / ".chalice" / "deployments"
    zips = sorted(cache.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in zips[keep:]:
        old.unlink(missing_ok=True)


def functions_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def check_template(template: dict[str, Any], lambda_runtime: str, expected_functions: set[str],
                   region: str = PLACEHOLDER_REGION) -> None:
    """The merge met Chalice's functions and the runtime is the pinned one."""
    functions = functions_of(template)
    problems = []
    if set(functions) != expected_functions:
        problems.append(f"functions {sorted(functions)} != rendered {sorted(expected_functions)}")
    wanted = function_environment()
    consumers = queue_consumers()
    for fid, fn in sorted(functions.items()):
        props = fn["Properties"]
        if props.get("Runtime") != lambda_runtime:
            problems.append(f"{fid}: Runtime {props.get('Runtime')} (want {lambda_runtime})")
        env = props.get("Environment", {}).get("Variables", {})
        for key, value in wanted.items():
            if env.get(key) != value:
                problems.append(f"{fid}: {key} is {env.get(key)!r}, not wired to the template")
        if "FunctionName" not in props:
            problems.append(f"{fid}: no FunctionName")
        for name, event in props.get("Events", {}).items():
            if event["Type"] != "SQS":
                continue
            queue = consumers.get(fid)
            if queue is None or event["Properties"]["Queue"] != queue.arn:
                problems.append(f"{fid}: event {name} reads {event['Properties']['Queue']}, not this template's queue")
            elif queue.reserved:
                limit = event["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency")
                pool = props.get("ReservedConcurrentExecutions")
                if not pool or not limit or limit > pool:
                    problems.append(f"{fid}: event {name} may invoke {limit or 'unbounded'} at once, "
                                    f"reserved concurrency {pool}: throttled messages would count as receives")
    body = json.dumps(template)
    for literal in (region, "123456789012"):
        if literal in body:
            problems.append(f"literal {literal!r} in the template")
    if problems:
        raise PackageError("dist template:\n  " + "\n  ".join(problems))


def compile_zip(zip_path: Path, lambda_runtime: str) -> int:
    """Add a ``.pyc`` beside every ``.py`` of the zip, compiled by the
    runtime's own CPython in ``unchecked-hash`` mode → how many were added."""
    from tools import py313

    if lambda_runtime != "python3.13":
        raise PackageError(f"--compile needs the runtime's interpreter; tools.py313 provides python3.13, not {lambda_runtime}")
    try:
        root = py313.fetch()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        raise PackageError(f"no CPython 3.13 to compile with ({exc}); PYC=0 builds without .pyc") from None
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "task"
        with zipfile.ZipFile(zip_path) as zf:
            before = set(zf.namelist())
            zf.extractall(tree)
        # -d: tracebacks name /var/task/..., where Lambda unpacks the zip.
        proc = subprocess.run([*py313.command(root), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                               "-d", "/var/task", str(tree)],
                              env={**os.environ, **py313.environment(root)}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PackageError(f"compileall failed:\n{(proc.stdout + proc.stderr).strip()[-2000:]}")
        added = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.pyc"))
        added = [name for name in added if name not in before]
        with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in added:
                zf.write(tree / name, name)
        shutil.rmtree(tree)
    return len(added)


def package(stage: str, out_dir: Path | None = None, compile_pyc: bool = False) -> dict[str, Any]:
    """Build ``dist/<stage>/`` → a summary (paths, size, runtime, functions)."""
    out_dir = out_dir or ROOT / "dist" / stage
    lambda_runtime = chalice_cli.runtime()
    merge = json.loads(render(stage, out_dir)["merge"].read_text())
    expected = {k for k, v in merge["Resources"].items() if "FunctionName" in v.get("Properties", {})}
    for stale in ("sam.json", "deployment.zip"):
        (out_dir / stale).unlink(missing_ok=True)
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", PLACEHOLDER_REGION)
    env["HEXCAST_LAMBDA_RUNTIME"] = lambda_runtime
    env.pop(chalice_cli.DEPLOY_VALUES_ENV, None)  # never into a template
    env[chalice_cli.PYC_ENV] = "1" if compile_pyc else "0"
    cmd = [sys.executable, "-m", "deploy.chalice_cli", "package", "--stage", stage,
           "--merge-template", str(out_dir / "merge.json"), str(out_dir)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Could not install dependencies" in output:
        raise PackageError(f"chalice package failed (exit {proc.returncode}):\n{output.strip()}")
    prune_chalice_cache()
    template_path, zip_path = out_dir / "sam.json", out_dir / "deployment.zip"
    template = json.loads(template_path.read_text())
    check_template(template, lambda_runtime, expected, env["AWS_DEFAULT_REGION"])
    tags = check_zip(zip_path, lambda_runtime)
    with zipfile.ZipFile(zip_path) as zf:
        pyc = sum(name.endswith(".pyc") for name in zf.namelist())
    if compile_pyc and not pyc:
        raise PackageError(f"{zip_path}: no .pyc although --compile was given")
    with zipfile.ZipFile(zip_path) as zf:
        unpacked = sum(i.file_size for i in zf.infolist())
    return {
        "stage": stage,
        "runtime": lambda_runtime,
        "template": template_path,
        "zip": zip_path,
        "zip_bytes": zip_path.stat().st_size,
        "unpacked_bytes": unpacked,
        "functions": sorted(functions_of(template)),
        "pyc": pyc,
        "native": {d: tags[d] for d in NATIVE_PACKAGES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="chalice package with the runtime pinned and the resources merged")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--compile", action="store_true",
                        help="add .pyc compiled by CPython 3.13 (unchecked-hash) to the zip: faster cold starts")
    args = parser.parse_args(argv)
    try:
        s = package(args.stage, compile_pyc=args.compile)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    print(f"package: {s['template'].relative_to(ROOT)} ({len(s['functions'])} functions on {s['runtime']}: "
          f"{', '.join(s['functions'])})")
    pyc = f"{s['pyc']:,} .pyc compiled by CPython 3.13" if s["pyc"] else "no .pyc (PYC=0)"
    print(f"package: {s['zip'].relative_to(ROOT)} {s['zip_bytes'] / 1e6:.1f} MB "
          f"({s['unpacked_bytes'] / 1e6:.0f} MB unpacked; Lambda allows 250 MB; {pyc})")
    for dist, tags in s["native"].items():
        print(f"package:   {dist}: {tags[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
