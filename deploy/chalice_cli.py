"""Chalice's CLI with the Lambda runtime pinned to one AWS accepts.

Chalice 1.34 has no setting for the runtime: ``Config.lambda_python_version``
is derived from the interpreter Chalice runs in (``python3.11`` here), and AWS
no longer lets anyone create python3.11 functions. That property is the one
value Chalice reads for the functions' ``Runtime`` (template and ``chalice
deploy``) and for the packager's wheel ABI (``cp3XX``) and glibc (2.34 for
Amazon Linux 2023). So this module is ``chalice`` with three changes, applied
before its CLI runs::

    python -m deploy.chalice_cli package --stage dev --merge-template ... dist/dev
    python -m deploy.chalice_cli deploy --stage dev

1. ``Config.lambda_python_version`` answers :data:`RUNTIME` (``python3.13``;
   ``HEXCAST_LAMBDA_RUNTIME`` may say ``python3.12``).
2. The packager's dependency download is one ``pip download --only-binary=:all:
   --platform manylinux_2_*_x86_64 --python-version 3.13 --implementation cp
   --abi cp313`` of the pinned ``requirements.txt``: wheels built for the
   runtime's ABI and glibc, fetched from any interpreter, cached under
   ``~/.cache/hexcast/wheels/`` (offline after the first time). Chalice's own
   path downloads for the local interpreter first, then sdists, and compiles
   them on this machine (minutes, and h3's sdist trips its tar check). Every
   package must come as a compatible wheel pinned in ``requirements.txt``:
   anything else is an error, nothing is built from source.
3. "Could not install dependencies" is an error (exit status 2), never the
   warning Chalice prints while still writing a package that fails on Lambda.
4. ``chalicelib/**/__pycache__`` stays out of the zip: this interpreter's
   bytecode is useless to another Python, and it changed Chalice's cache key.
   With ``HEXCAST_PYC=1`` (``make deploy`` / ``make package`` unless
   ``PYC=0``) the zip Chalice builds then gets the runtime's own bytecode
   instead (:func:`deploy.package.compile_zip`: CPython 3.13, unchecked-hash).
5. An SQS event source of a function with a ``reserved_concurrency`` (the
   alert planner) invokes at most that many at once (``MaximumConcurrency``),
   unless ``@on_sqs_message(maximum_concurrency=...)`` says otherwise: Lambda
   would otherwise throttle the surplus, and a throttled message counts as a
   receive on its way to the dead-letter queue.

``chalice deploy`` also receives the stage's deploy-time values (platform
application ARNs, key hashes, the coupon secret) from ``make deploy`` through
``HEXCAST_DEPLOY_VALUES`` (a JSON object): they are added to every function's
environment without ever being written to ``.chalice/config.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

#: ``1``: byte-compile the deployment zip with the runtime's CPython (item 4 above).
PYC_ENV = "HEXCAST_PYC"
#: Lambda runtime → (pip --python-version, wheel ABI). python3.11 is not here
#: on purpose: AWS no longer accepts it for new functions.
RUNTIMES = {"python3.12": ("3.12", "cp312"), "python3.13": ("3.13", "cp313")}
DEFAULT_RUNTIME = "python3.13"
#: Amazon Linux 2023 (the python3.12+ runtimes) has glibc 2.34: any
#: manylinux_2_17 … manylinux_2_34 wheel runs there.
GLIBC_MINORS = range(17, 35)
MACHINE = "x86_64"
#: What the patches below were written against; another Chalice may differ.
CHALICE_SERIES = "1.34."
#: The least ``MaximumConcurrency`` an SQS event source accepts.
MIN_SQS_CONCURRENCY = 2
#: The variable ``make deploy`` passes the stage's deploy-time values in.
DEPLOY_VALUES_ENV = "HEXCAST_DEPLOY_VALUES"

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(?:#.*)?$")


def runtime(env: dict[str, str] | None = None) -> str:
    """The Lambda runtime to target: ``HEXCAST_LAMBDA_RUNTIME`` or python3.13."""
    value = (os.environ if env is None else env).get("HEXCAST_LAMBDA_RUNTIME") or DEFAULT_RUNTIME
    if value not in RUNTIMES:
        raise SystemExit(f"HEXCAST_LAMBDA_RUNTIME={value!r}: use one of {', '.join(sorted(RUNTIMES))}")
    return value


def pip_platforms() -> list[str]:
    """``--platform`` values: pip takes each literally, so every glibc minor."""
    return [f"manylinux_2_{minor}_{MACHINE}" for minor in GLIBC_MINORS] + [f"manylinux2014_{MACHINE}"]


def normalize(name: str) -> str:
    """PEP 503 name: ``MarkupSafe`` → ``markupsafe``, ``python_dateutil`` → ``python-dateutil``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file (normalised name →
    version); any other requirement line is an error: the package must be
    reproducible."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        m = _PIN.match(text)
        if m is None:
            raise RuntimeError(f"{path}:{number}: not pinned as name==version: {text!r}")
        pins[normalize(m.group(1))] = m.group(2)
    return pins


def wheel_name_version(filename: str) -> tuple[str, str]:
    """``numpy-2.4.6-cp313-cp313-manylinux_2_28_x86_64.whl`` → ``("numpy", "2.4.6")``."""
    name, version = filename.split("-")[:2]
    return normalize(name), version


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hexcast" / "wheels"


def download_wheels(requirements: Path, lambda_runtime: str, cache: Path | None = None) -> Path:
    """The directory holding one wheel per pinned requirement, built for
    ``lambda_runtime``; downloaded once per (requirements, runtime) and then
    reused offline."""
    py_version, abi = RUNTIMES[lambda_runtime]
    body = requirements.read_bytes()
    key = hashlib.sha256(b"\0".join([body, abi.encode(), " ".join(pip_platforms()).encode()])).hexdigest()[:16]
    target = (cache or cache_root()) / f"{abi}-{key}"
    marker = target / ".complete"
    if marker.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{abi}-", dir=target.parent))
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", py_version, "--abi", abi]
    for platform in pip_platforms():
        cmd += ["--platform", platform]
    cmd += ["-r", str(requirements), "-d", str(tmp)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(
            f"Could not install dependencies: pip found no {abi} manylinux {MACHINE} wheels for "
            f"{requirements}:\n{proc.stderr.strip() or proc.stdout.strip()}"
        )
    check_wheels(tmp, pinned_requirements(requirements))
    marker_text = "\n".join(sorted(p.name for p in tmp.glob("*.whl"))) + "\n"
    (tmp / ".complete").write_text(marker_text)
    if target.exists():  # a concurrent or broken earlier run
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def check_wheels(directory: Path, pins: dict[str, str]) -> None:
    """Exactly one wheel per pin, at the pinned version, and nothing unpinned."""
    found: dict[str, str] = {}
    for whl in directory.glob("*.whl"):
        name, version = wheel_name_version(whl.name)
        found[name] = version
    problems = [f"{n}: no wheel" for n in sorted(set(pins) - set(found))]
    problems += [f"{n}=={found[n]} is not pinned in requirements.txt" for n in sorted(set(found) - set(pins))]
    problems += [f"{n}: got {found[n]}, pinned {pins[n]}" for n in sorted(set(pins) & set(found)) if found[n] != pins[n]]
    others = [p.name for p in directory.iterdir() if p.suffix != ".whl" and not p.name.startswith(".")]
    problems += [f"{n}: not a wheel" for n in sorted(others)]
    if problems:
        raise RuntimeError("Could not install dependencies:\n  " + "\n  ".join(problems))


def deploy_values(env: dict[str, str] | None = None) -> dict[str, str]:
    """The deploy-time environment ``make deploy`` hands over (or ``{}``)."""
    raw = (os.environ if env is None else env).get(DEPLOY_VALUES_ENV, "")
    if not raw:
        return {}
    values = json.loads(raw)
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and k.startswith("HEXCAST_") and isinstance(v, str) for k, v in values.items()
    ):
        raise SystemExit(f"{DEPLOY_VALUES_ENV} must be a JSON object of HEXCAST_* strings")
    return values


def apply_patches(lambda_runtime: str) -> None:
    """Pin the runtime, replace the dependency download, make a missing
    dependency an error, leave bytecode out; see the module docstring."""
    import chalice
    from chalice import config as chalice_config
    from chalice.deploy import packager

    if not chalice.__version__.startswith(CHALICE_SERIES):
        raise SystemExit(f"deploy/chalice_cli.py was written for Chalice {CHALICE_SERIES}x, not {chalice.__version__}")
    if lambda_runtime not in packager.BaseLambdaDeploymentPackager._RUNTIME_TO_ABI:
        raise SystemExit(f"Chalice {chalice.__version__} cannot package {lambda_runtime}")

    chalice_config.Config.lambda_python_version = property(lambda self: lambda_runtime)  # type: ignore[assignment]

    extra = deploy_values()
    if extra:
        original_env = chalice_config.Config.environment_variables

        def environment_variables(self):
            return {**original_env.fget(self), **extra}

        chalice_config.Config.environment_variables = property(environment_variables)  # type: ignore[assignment]

    def download_dependencies(self, abi, directory, requirements_filename):
        if abi != RUNTIMES[lambda_runtime][1]:
            raise RuntimeError(f"Could not install dependencies: asked for {abi}, pinned {lambda_runtime}")
        source = download_wheels(Path(requirements_filename), lambda_runtime)
        wheels = set()
        for whl in sorted(source.glob("*.whl")):
            if not self._is_compatible_wheel_filename(abi, whl.name):
                raise RuntimeError(f"Could not install dependencies: {whl.name} does not run on {lambda_runtime}")
            shutil.copy2(whl, os.path.join(directory, whl.name))
            wheels.add(packager.Package(directory, whl.name))
        return wheels, set()

    packager.DependencyBuilder._download_dependencies = download_dependencies

    def build_python_dependencies(self, python_version, requirements_filepath, site_packages_dir):
        try:
            self._dependency_builder.build_site_packages(
                self._RUNTIME_TO_ABI[python_version], requirements_filepath, site_packages_dir
            )
        except packager.MissingDependencyError as exc:
            missing = ", ".join(sorted(p.identifier for p in exc.missing))
            raise RuntimeError(f"Could not install dependencies: {missing}") from exc

    packager.BaseLambdaDeploymentPackager._build_python_dependencies = build_python_dependencies

    original_lib_files = packager.BaseLambdaDeploymentPackager._iter_chalice_lib_if_needed

    def chalice_lib_files(self, project_dir):
        for full_path, zip_path in original_lib_files(self, project_dir):
            if "__pycache__" not in zip_path.split("/") and not zip_path.endswith(".pyc"):
                yield full_path, zip_path

    packager.BaseLambdaDeploymentPackager._iter_chalice_lib_if_needed = chalice_lib_files

    from chalice.deploy import appgraph

    original_sqs = appgraph.ApplicationGraphBuilder._create_sqs_subscription

    def create_sqs_subscription(self, config, deployment, sqs_config, stage_name):
        source = original_sqs(self, config, deployment, sqs_config, stage_name)
        pool = source.lambda_function.reserved_concurrency
        if source.maximum_concurrency is None and pool is not None and pool >= MIN_SQS_CONCURRENCY:
            source.maximum_concurrency = pool
        return source

    appgraph.ApplicationGraphBuilder._create_sqs_subscription = create_sqs_subscription

    if os.environ.get(PYC_ENV) == "1":
        original_create = packager.LambdaDeploymentPackager.create_deployment_package

        def create_deployment_package(self, project_dir, python_version):
            from deploy.package import compile_zip

            # Chalice's cached zip stays as built (PYC=0 reuses it); the compiled
            # copy beside it is cached under its own name.
            path = Path(original_create(self, project_dir, python_version))
            compiled = path.with_name(f"{path.stem}-pyc.zip")
            if not compiled.is_file():
                partial = compiled.with_suffix(".partial")
                shutil.copyfile(path, partial)
                compile_zip(partial, lambda_runtime)
                partial.replace(compiled)
            return str(compiled)

        packager.LambdaDeploymentPackager.create_deployment_package = create_deployment_package
    # Chalice compares the runtime with this interpreter and warns: expected here.
    warnings.filterwarnings("ignore", message="You are currently running python")


def main(argv: list[str] | None = None) -> int:
    apply_patches(runtime())
    from chalice.cli import main as chalice_main

    if argv is not None:
        sys.argv = ["chalice", *argv]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
