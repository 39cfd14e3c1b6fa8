"""``make package``: a template cfn-lint accepts, on a runtime AWS accepts,
with a deployment zip whose native wheels are built for that runtime."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import chalice_cli
from deploy.package import NATIVE_PACKAGES, tag_runs_on, wheel_tags
from tests.deploy.conftest import ROOT

#: cfn-lint's list (E2531/W2531): runtimes AWS no longer lets anyone create or
#: update functions with, or soon won't.
DEPRECATED_RUNTIMES = {"python2.7", "python3.6", "python3.7", "python3.8", "python3.9", "python3.10", "python3.11"}


def functions(template: dict) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def test_make_package_writes_template_and_zip_that_cfn_lint_accepts(packaged):
    assert "package: cfn-lint passed" in packaged["output"], packaged["output"]
    assert "Could not install dependencies" not in packaged["output"]
    assert packaged["template"]["Transform"] == "AWS::Serverless-2016-10-31"
    assert packaged["zip"].stat().st_size > 1_000_000


def test_every_function_runs_on_the_pinned_runtime_not_the_local_interpreters(packaged):
    fns = functions(packaged["template"])
    assert {"APIHandler", "SendFanout", "PlanAlerts", "PollWeather", "ReleaseHeld"} <= set(fns)
    runtimes = {fn["Properties"]["Runtime"] for fn in fns.values()}
    assert runtimes == {chalice_cli.DEFAULT_RUNTIME}, runtimes
    assert not runtimes & DEPRECATED_RUNTIMES


def test_zip_carries_numpy_shapely_h3_wheels_for_cp313_manylinux_x86_64(packaged):
    tags = wheel_tags(packaged["zip"])
    for dist in ("numpy", "shapely", "h3"):
        assert dist in tags, sorted(tags)
        assert tags[dist], dist
        for tag in tags[dist]:
            interpreter, abi, platform = tag.split("-")
            assert (interpreter, abi) == ("cp313", "cp313"), (dist, tag)
            assert platform.startswith("manylinux") and platform.endswith("_x86_64"), (dist, tag)
    # every other wheel too: native ones for cp313, the rest pure
    for dist, dist_tags in tags.items():
        assert any(tag_runs_on(t, "python3.13") for t in dist_tags), (dist, dist_tags)
    assert set(NATIVE_PACKAGES) <= set(tags)
    with zipfile.ZipFile(packaged["zip"]) as zf:
        names = zf.namelist()
    assert "app.py" in names and "chalicelib/settings.py" in names and "chalice/app.py" in names
    # not deployed: tools, tests, the deploy scripts, the sample fences
    assert not [n for n in names if n.split("/")[0] in ("tools", "tests", "deploy", "geofences", "benchmarks")]
    # the local interpreter's compiled extensions never sneak in
    assert not [n for n in names if "cpython-311" in n]


def _python313() -> str | None:
    """A CPython 3.13 that actually runs (a pyenv shim may not)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")), reverse=True)
    candidates += [p for p in (shutil.which("python3.13"),) if p]
    for candidate in candidates:
        try:
            proc = subprocess.run([candidate, "-I", "-c", "import sys; print(sys.implementation.name, *sys.version_info[:2])"],
                                  check=False,
                                  capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if proc.returncode == 0 and proc.stdout.split() == ["cpython", "3", "13"]:
            return candidate
    return None


def test_app_imports_and_answers_from_the_unpacked_zip_on_cpython_313(packaged, tmp_path):
    """What Lambda does: the zip's root on ``sys.path`` plus the runtime's own
    boto3. This machine's interpreter is 3.11: the zip's cp313 wheels cannot
    load into it (another ABI), so a CPython 3.13 is needed for this check."""
    python = _python313()
    if python is None:
        pytest.skip("no CPython 3.13 on this machine: the zip holds cp313 wheels (numpy, shapely, h3), which "
                    "this 3.11 interpreter cannot import (different ABI); the WHEEL tags are checked instead")
    code_dir = tmp_path / "task"
    with zipfile.ZipFile(packaged["zip"]) as zf:
        zf.extractall(code_dir)
    # The Lambda runtime ships boto3/botocore; the zip does not carry them.
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    import boto3
    import botocore
    import jmespath
    import s3transfer

    for mod in (boto3, botocore, jmespath, s3transfer):
        src = Path(mod.__file__).parent
        (runtime_dir / src.name).symlink_to(src)
    probe = f"""
import json, sys
sys.path[:0] = [{str(code_dir)!r}, {str(runtime_dir)!r}]
import numpy, shapely, h3
import app
for mod in (numpy, shapely, h3):
    assert mod.__file__.startswith({str(code_dir)!r}), mod.__file__
event = {{"resource": "/v1/health", "path": "/v1/health", "httpMethod": "GET", "headers": {{}},
          "multiValueHeaders": {{}}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
          "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
          "requestContext": {{"resourcePath": "/v1/health", "httpMethod": "GET", "path": "/dev/v1/health",
                              "requestId": "r-1", "stage": "dev"}}}}
class Context:
    aws_request_id = "r-1"
    function_name = "hexcast-dev"
    def get_remaining_time_in_millis(self):
        return 30000
resp = app.app(event, Context())
print(json.dumps({{"python": sys.version.split()[0], "numpy": numpy.__version__, "h3": h3.__version__,
                  "status": resp["statusCode"], "body": json.loads(resp["body"])}}))
"""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "HEXCAST_STAGE": "dev",
           "AWS_DEFAULT_REGION": "us-east-1", "LANG": "C.UTF-8"}
    proc = subprocess.run([python, "-I", "-S", "-c", probe], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["python"].startswith("3.13")
    assert out["status"] == 200 and out["body"]["status"] == "ok", out


def test_local_interpreter_cannot_load_the_zips_numpy(packaged, tmp_path):
    """Why the check above needs 3.13: proof that the zip is not built for
    the machine it was built on."""
    code_dir = tmp_path / "task"
    with zipfile.ZipFile(packaged["zip"]) as zf:
        zf.extractall(code_dir, members=[n for n in zf.namelist() if n.startswith("numpy/")])
    probe = f"import sys; sys.path.insert(0, {str(code_dir)!r}); import numpy"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_runtime_is_recorded_in_the_zip_name_and_chalice_cache(packaged):
    """Chalice caches the dependency build per runtime: a python3.11 build is
    never reused for python3.13."""
    cached = list((ROOT / ".chalice" / "deployments").glob("*-python3.13.zip"))
    assert cached, "chalice did not build for python3.13"


@pytest.mark.parametrize(
    "tag, ok",
    [
        ("cp313-cp313-manylinux_2_28_x86_64", True),
        ("cp313-cp313-manylinux2014_x86_64", True),
        ("cp313-cp313-manylinux_2_34_x86_64", True),
        ("cp313-cp313-manylinux_2_35_x86_64", False),  # newer glibc than Amazon Linux 2023
        ("cp311-cp311-manylinux_2_17_x86_64", False),  # the local interpreter's ABI
        ("cp313-cp313-manylinux_2_28_aarch64", False),
        ("cp313-cp313-musllinux_1_2_x86_64", False),
        ("cp313-cp313-macosx_11_0_arm64", False),
        ("cp39-abi3-manylinux_2_17_x86_64", True),
        ("py3-none-any", True),
    ],
)
def test_wheel_tag_compatibility(tag, ok):
    assert tag_runs_on(tag, "python3.13") is ok


def test_requirements_must_all_be_pinned(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.4.6\n# comment\n\nshapely>=2\n")
    with pytest.raises(RuntimeError, match="not pinned"):
        chalice_cli.pinned_requirements(req)
    req.write_text("numpy==2.4.6  # why\nMarkupSafe==3.0.4\n")
    assert chalice_cli.pinned_requirements(req) == {"numpy": "2.4.6", "markupsafe": "3.0.4"}


def test_wheel_set_must_match_the_pins_exactly(tmp_path):
    for name in ("numpy-2.4.6-cp313-cp313-manylinux_2_28_x86_64.whl", "typing_extensions-4.15.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(RuntimeError, match="Could not install dependencies") as err:
        chalice_cli.check_wheels(tmp_path, {"numpy": "2.4.6", "h3": "4.5.0"})
    text = str(err.value)
    assert "h3: no wheel" in text and "typing-extensions==4.15.0 is not pinned" in text


def _in_fresh_process(code: str) -> subprocess.CompletedProcess:
    """The patches change Chalice's classes: try them in another process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), AWS_DEFAULT_REGION="us-east-1")
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_chalice_cli_pins_runtime_and_adds_deploy_values_without_touching_config():
    values = {"HEXCAST_COUPON_SECRET": "s" * 40}
    code = f"""
import json, os
os.environ["HEXCAST_DEPLOY_VALUES"] = {json.dumps(json.dumps(values))}
from deploy import chalice_cli
chalice_cli.apply_patches("python3.13")
from chalice.cli.factory import CLIFactory
config = CLIFactory(".", environ=dict(os.environ)).create_config_obj("dev")
print(json.dumps({{"runtime": config.lambda_python_version, "env": config.environment_variables}}))
"""
    before = (ROOT / ".chalice" / "config.json").read_text()
    proc = _in_fresh_process(code)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "python3.13"
    assert out["env"]["HEXCAST_COUPON_SECRET"] == "s" * 40
    assert out["env"]["HEXCAST_DEVICES_TABLE"] == "hexcast-dev-devices"
    assert (ROOT / ".chalice" / "config.json").read_text() == before


def test_a_missing_dependency_is_an_error_not_chalices_warning():
    code = """
from deploy import chalice_cli
chalice_cli.apply_patches("python3.13")
from chalice.deploy import packager

class Builder:
    def build_site_packages(self, abi, requirements, target):
        raise packager.MissingDependencyError({packager.Package("/nowhere", "h3-4.5.0-cp313-cp313-win_amd64.whl")})

p = packager.LambdaDeploymentPackager(osutils=None, dependency_builder=Builder(), ui=None)
try:
    p._build_python_dependencies("python3.13", "requirements.txt", "/tmp/nowhere")
except RuntimeError as exc:
    print("raised:", exc)
else:
    print("no error")
"""
    proc = _in_fresh_process(code)
    assert proc.returncode == 0, proc.stderr
    assert "raised: Could not install dependencies: h3==4.5.0" in proc.stdout, proc.stdout


def test_python311_is_refused_as_a_target(monkeypatch):
    monkeypatch.setenv("HEXCAST_LAMBDA_RUNTIME", "python3.11")
    with pytest.raises(SystemExit, match="python3.12, python3.13"):
        chalice_cli.runtime()


def test_chalice_deploy_limits_the_planners_event_source_to_its_reserved_concurrency():
    """``chalice deploy`` (``make deploy``) builds the event source mapping
    itself, without the merge template: the patch gives the planner's the
    same ``MaximumConcurrency`` the package path has; send_fanout (no reserved
    pool) stays unlimited."""
    code = """
import json, os
from deploy import chalice_cli
chalice_cli.apply_patches("python3.13")
from chalice.cli.factory import CLIFactory
from chalice.deploy import models
from chalice.deploy.appgraph import ApplicationGraphBuilder
factory = CLIFactory(".", environ=os.environ)  # as the CLI: the stage variables reach the app
config = factory.create_config_obj("dev")
graph = ApplicationGraphBuilder().build(config, "dev")
out = {r.resource_name: [r.queue, r.maximum_concurrency, r.lambda_function.reserved_concurrency,
                         r.lambda_function.timeout]
       for r in graph.resources if isinstance(r, models.SQSEventSource)}
print(json.dumps(out))
"""
    proc = _in_fresh_process(code)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"plan_alerts-sqs-event-source": ["hexcast-dev-alerts", 10, 10, 300],
                   "send_fanout-sqs-event-source": ["hexcast-dev-fanout", None, None, 60]}, out
