"""``make deploy``: the plan without AWS (``DRY_RUN=1``), and the real path
against the emulator — the resource stack created once and left alone the
second time, deploy-time values read from SSM and handed to ``chalice
deploy`` (here a recorder) without touching the config."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest

from chalicelib.auth import hash_token
from deploy import deploy as dp
from deploy import render_resources as rr
from tests.deploy.conftest import ROOT


def test_make_deploy_dry_run_prints_the_plan_without_aws(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # no credentials, no region, no config: a dry run must not need any
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run(["make", "--no-print-directory", "deploy", "STAGE=dev", "DRY_RUN=1"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "dry run: nothing is changed" in out
    assert "CloudFormation stack hexcast-dev-resources from dist/dev/resources.json" in out
    for table in ("hexcast-dev-devices", "hexcast-dev-deliveries"):
        assert f"DynamoDB {table}" in out
    assert "SQS hexcast-dev-fanout, visibility 360 s, dead letters after 5 receives" in out
    assert "SQS hexcast-dev-alerts, visibility 1800 s, dead letters after 5 receives" in out
    assert "SQS hexcast-dev-alerts-dlq" in out and "SQS hexcast-dev-fanout-dlq" in out
    assert "/hexcast/dev/coupon-secret → HEXCAST_COUPON_SECRET (required, SecureString)" in out
    assert "deploy.chalice_cli deploy --stage dev" in out and "runtime python3.13" in out
    assert "hexcast-dev-send_fanout" in out
    assert "hexcast-dev-send_fanout ← SQS hexcast-dev-fanout (timeout 60 s)" in out
    assert "hexcast-dev-plan_alerts ← SQS hexcast-dev-alerts (timeout 300 s, reserved concurrency 10)" in out
    assert "Traceback" not in out


def test_dry_run_refuses_an_unknown_stage():
    with pytest.raises(SystemExit, match="no stage 'qa'"):
        dp.deploy("qa", dry_run=True, say=lambda line: None)


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SECURITY_TOKEN": "testing",
                 "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield {"cfn": boto3.client("cloudformation"), "ssm": boto3.client("ssm")}


def put_values(ssm, stage: str = "dev", skip: tuple[str, ...] = ()) -> dict[str, str]:
    values = {
        "HEXCAST_ADMIN_KEY_HASHES": f"{hash_token('admin-old')},{hash_token('admin-new')}",  # a rotation
        "HEXCAST_APP_KEY_HASHES": hash_token("app"),
        "HEXCAST_COUPON_SECRET": "k" * 48,
        "HEXCAST_SNS_FCM_ARN": f"arn:aws:sns:us-east-1:123456789012:app/GCM/hexcast-{stage}-fcm",
    }
    for p in rr.PARAMETERS:
        if p.env in values and p.env not in skip:
            ssm.put_parameter(Name=rr.ssm_name(stage, p), Value=values[p.env],
                              Type="SecureString" if p.secret else "String")
    return values


class RecordingChalice:
    """``chalice deploy`` recorded; it writes the record of the API it made
    (as Chalice does, under ``deployed_dir``) when given one."""

    def __init__(self, deployed_dir=None):
        self.calls = []
        self.deployed_dir = deployed_dir

    def __call__(self, cmd, env):
        self.calls.append((cmd, json.loads(env["HEXCAST_DEPLOY_VALUES"]), env["HEXCAST_LAMBDA_RUNTIME"]))
        if self.deployed_dir is not None:
            (self.deployed_dir / "dev.json").write_text(json.dumps({"resources": [
                {"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": "arn:aws:lambda:x"},
                {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc123",
                 "rest_api_url": "https://abc123.execute-api.us-east-1.amazonaws.com/api/"}]}))
        return 0


class RecordingApiGateway:
    def __init__(self):
        self.calls = []

    def put_rest_api(self, **kw):
        self.calls.append(("put_rest_api", kw))

    def create_deployment(self, **kw):
        self.calls.append(("create_deployment", kw))


def test_deploy_creates_the_resource_stack_then_runs_chalice_deploy_and_is_idempotent(aws, tmp_path):
    values = put_values(aws["ssm"])
    chalice = RecordingChalice(tmp_path)
    apigw = RecordingApiGateway()
    lines: list[str] = []
    first = dp.deploy("dev", cfn=aws["cfn"], ssm=aws["ssm"], chalice=chalice, say=lines.append, apigw=apigw, deployed_dir=tmp_path)
    assert first["stack"] == "created"
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    assert sorted(tables) == sorted(rr.stage_config("dev").table_name(t) for t in rr.TABLE_ENV)
    sqs = boto3.client("sqs")
    for name in ("hexcast-dev-fanout", "hexcast-dev-fanout-dlq", "hexcast-dev-alerts", "hexcast-dev-alerts-dlq"):
        sqs.get_queue_url(QueueName=name)
    (cmd, handed, runtime), = chalice.calls
    assert cmd[-5:] == ["-m", "deploy.chalice_cli", "deploy", "--stage", "dev"]
    assert runtime == "python3.13"
    for env, value in values.items():
        assert handed[env] == value
        assert value not in " ".join(cmd)  # never on a command line
    assert handed["HEXCAST_SNS_APNS_ARN"] == ""  # optional and not configured: push to iOS is off
    stack = aws["cfn"].describe_stacks(StackName="hexcast-dev-resources")["Stacks"][0]
    assert {t["Key"]: t["Value"] for t in stack["Tags"]} == {"app": "hexcast", "stage": "dev"}

    (put, merged), (dep, deployment) = apigw.calls
    assert (put, dep) == ("put_rest_api", "create_deployment")
    assert merged["restApiId"] == "abc123" and merged["mode"] == "merge"
    definition = json.loads(merged["body"])
    assert definition["x-amazon-apigateway-gateway-responses"]["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    assert "delete" in definition["paths"]["/v1/pings"] and "post" not in definition["paths"]["/v1/pings"]
    assert deployment == {"restApiId": "abc123", "stageName": "api", "description": "hexcast: error answers"}

    second = dp.deploy("dev", cfn=aws["cfn"], ssm=aws["ssm"], chalice=chalice, say=lines.append, apigw=apigw, deployed_dir=tmp_path)
    # AWS answers "No updates are to be performed" (unchanged); moto re-applies the same template
    assert second["stack"] in ("unchanged", "updated")
    assert sorted(boto3.client("dynamodb").list_tables()["TableNames"]) == sorted(tables)
    assert len(aws["cfn"].describe_stacks()["Stacks"]) == 1
    assert len(chalice.calls) == 2 and chalice.calls[1][1] == chalice.calls[0][1]
    assert not any(v in "\n".join(lines) for k, v in values.items() if "ARN" not in k)  # secrets never printed


def test_no_updates_from_cloudformation_means_unchanged():
    from botocore.exceptions import ClientError

    class Cfn:
        def describe_stacks(self, StackName):
            return {"Stacks": [{"StackStatus": "UPDATE_COMPLETE"}]}

        def update_stack(self, **kw):
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "No updates are to be performed."}},
                              "UpdateStack")

    plan = dp.make_plan("dev")
    assert dp.ensure_stack(Cfn(), plan, say=lambda line: None) == "unchanged"


def test_missing_secret_stops_before_anything_is_created(aws):
    put_values(aws["ssm"], skip=("HEXCAST_COUPON_SECRET",))
    chalice = RecordingChalice()
    with pytest.raises(dp.DeployError) as err:
        dp.deploy("dev", cfn=aws["cfn"], ssm=aws["ssm"], chalice=chalice, say=lambda line: None)
    assert "aws ssm put-parameter --name /hexcast/dev/coupon-secret --type SecureString" in str(err.value)
    assert aws["cfn"].describe_stacks()["Stacks"] == [] and not chalice.calls


def test_malformed_values_are_refused_without_echoing_secrets(aws):
    put_values(aws["ssm"], skip=("HEXCAST_APP_KEY_HASHES", "HEXCAST_SNS_FCM_ARN"))
    aws["ssm"].put_parameter(Name="/hexcast/dev/app-key-hashes", Value="plaintext-app-key", Type="SecureString")
    aws["ssm"].put_parameter(Name="/hexcast/dev/sns-fcm-arn", Type="String",
                             Value="arn:aws:sns:us-east-1:123456789012:app/GCM/hexcast-prod-fcm")
    with pytest.raises(dp.DeployError) as err:
        dp.deploy("dev", cfn=aws["cfn"], ssm=aws["ssm"], chalice=RecordingChalice(), say=lambda line: None)
    text = str(err.value)
    assert "/hexcast/dev/app-key-hashes: must match" in text and "plaintext-app-key" not in text
    assert "hexcast-prod-fcm" in text  # not a secret: shown


def test_deploy_without_a_record_of_the_api_fails_loudly(aws, tmp_path):
    put_values(aws["ssm"])
    with pytest.raises(dp.DeployError, match="no record of the API"):
        dp.deploy("dev", cfn=aws["cfn"], ssm=aws["ssm"], chalice=RecordingChalice(), say=lambda line: None,
                  apigw=RecordingApiGateway(), deployed_dir=tmp_path)
