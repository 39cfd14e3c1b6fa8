"""Every resource as code: the template's tables are ``schema.TABLES``, each
queue has its dead-letter queue and its consumer (the alert planner within
its lease and its reserved concurrency), secrets are Parameters, the stages are
configured; and the template's resources, created in the emulator (moto's
CloudFormation), run the app (register, fence, campaign, ping, delivery)."""

from __future__ import annotations

import ast
import json
import re
import secrets
import time
from pathlib import Path

import boto3
import pytest

from chalicelib.auth import hash_token
from chalicelib.settings import Settings
from chalicelib.store.schema import TABLES, TTL_ATTRIBUTES
from deploy import render_resources as rr
from tests.deploy.conftest import ROOT, STAGE

STAGES = ("dev", "prod")
#: Settings that a deployed stage leaves at the code's default, and why.
DEFAULTED = {
    "HEXCAST_WEATHER_HTTP_TIMEOUT_S": "10 s fits both the feed and zone lookups in every stage",
    "HEXCAST_REGION_SHARDS": "part of the device region index's keys: changing it needs a re-index",
    "HEXCAST_FANOUT_CHUNK": "one SQS message per 100 devices: sized to the send_fanout timeout",
    "HEXCAST_MAX_CONVERSION_VALUE": "1,000,000 in any currency's unit; a stage selling in a currency of small units sets it",
    "HEXCAST_INDEX_CACHE_CELLS": "200,000 cells of index rows per warm function fit 512 MB with room to spare",
    "HEXCAST_INDEX_CACHE_S": "an hour at most, on top of the index epoch that invalidates it at once",
    "HEXCAST_LOCATION_WRITE_RES": "0: a still or fence-less move is written at the refresh (the measured ping cost)",
}
#: Read by the settings but never set on a deployed stage.
LOCAL_ONLY = {
    "HEXCAST_ADMIN_KEY": "plaintext keys are the local stack's; a stage gets HEXCAST_ADMIN_KEY_HASHES",
    "HEXCAST_APP_KEY": "plaintext keys are the local stack's; a stage gets HEXCAST_APP_KEY_HASHES",
}


def tables_of(template: dict) -> dict[str, dict]:
    return {
        res["Properties"]["TableName"]: res
        for res in template["Resources"].values()
        if res.get("Type") == "AWS::DynamoDB::Table"
    }


def rendered(stage: str) -> tuple[rr.StageConfig, dict]:
    cfg = rr.stage_config(stage)
    functions = rr.chalice_functions()
    return cfg, rr.merge_template(cfg, functions)


# ------------------------------------------------------------------ tables
@pytest.mark.parametrize("stage", STAGES)
def test_template_tables_are_exactly_schema_tables(stage):
    cfg, template = rendered(stage)
    tables = tables_of(template)
    assert set(tables) == {cfg.table_name(t) for t in TABLES}
    for logical, spec in TABLES.items():
        res = tables[cfg.table_name(logical)]
        props = res["Properties"]
        for key, value in spec.items():
            assert props[key] == value, (logical, key)
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert ("TimeToLiveSpecification" in props) == (logical in TTL_ATTRIBUTES)
        if logical in TTL_ATTRIBUTES:
            assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTES[logical], "Enabled": True}
        pitr = props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False)
        assert pitr == (logical in rr.STATEFUL_TABLES), logical
        extra = set(props) - set(spec) - {"TableName", "TimeToLiveSpecification", "PointInTimeRecoverySpecification",
                                          "DeletionProtectionEnabled", "Tags"}
        assert not extra, (logical, extra)
        keep = "Delete" if stage == "dev" else "Retain"
        assert (res["DeletionPolicy"], res["UpdateReplacePolicy"]) == (keep, keep)
        assert props["DeletionProtectionEnabled"] is (stage != "dev")


def test_every_table_that_holds_state_has_point_in_time_recovery():
    assert {"geofences", "devices", "campaigns", "deliveries"} <= rr.STATEFUL_TABLES <= set(TABLES)


def test_packaged_template_carries_the_rendered_resources(packaged):
    template, resources = packaged["template"], packaged["resources"]
    for rid, res in resources["Resources"].items():
        assert template["Resources"][rid] == res, rid
    assert tables_of(template) == tables_of(resources)


# ------------------------------------------------------------------ queues
QUEUE_CASES = [  # queue, its dead-letter queue, its consumer, the setting naming it, the stage's name
    ("FanoutQueue", "FanoutDeadLetterQueue", "SendFanout", "HEXCAST_FANOUT_QUEUE", "hexcast-dev-fanout"),
    ("AlertQueue", "AlertDeadLetterQueue", "PlanAlerts", "HEXCAST_ALERT_QUEUE", "hexcast-dev-alerts"),
]


@pytest.mark.parametrize("qid, dlq_id, fid, var, name", QUEUE_CASES, ids=[c[0] for c in QUEUE_CASES])
def test_queue_has_dead_letter_queue_and_visibility_six_times_its_consumers_timeout(packaged, qid, dlq_id, fid, var, name):
    template = packaged["template"]
    res = template["Resources"]
    queue, dlq = res[qid]["Properties"], res[dlq_id]["Properties"]
    assert rr.stage_config(STAGE).environment[var] == name
    assert queue["QueueName"] == name and dlq["QueueName"] == f"{name}-dlq"
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}, "maxReceiveCount": 5}
    timeout = res[fid]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    # a message lives through all its receives before it could expire
    assert queue["MessageRetentionPeriod"] > 5 * queue["VisibilityTimeout"]
    assert queue["SqsManagedSseEnabled"] and dlq["SqsManagedSseEnabled"]
    (event,) = res[fid]["Properties"]["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["BatchSize"] == 1
    assert event["Properties"]["Queue"] == {"Fn::Sub": f"${{{qid}.Arn}}"}
    # the function finds its queue (and the other one) by the stack's names
    for fn in (f for f in res.values() if f["Type"] == "AWS::Serverless::Function"):
        assert fn["Properties"]["Environment"]["Variables"][var] == {"Fn::GetAtt": [qid, "QueueName"]}


def test_planner_runs_within_its_lease_and_its_own_reserved_pool(packaged):
    """Planning one large alert takes minutes: the function stops before its
    lease on the alert runs out, a cut-short plan comes back after the lease
    (the retry takes it over instead of finding it held), and storm planning
    never takes more than its reserved concurrency — nor is it throttled,
    which would spend receives towards the dead-letter queue."""
    from chalicelib.services.alert_planning import PLAN_LEASE_S

    res = packaged["template"]["Resources"]
    props = res["PlanAlerts"]["Properties"]
    assert props["FunctionName"] == f"hexcast-{STAGE}-plan_alerts"
    assert props["Timeout"] == 300 < PLAN_LEASE_S
    assert res["AlertQueue"]["Properties"]["VisibilityTimeout"] == 6 * 300 >= PLAN_LEASE_S
    assert props["ReservedConcurrentExecutions"] == 10
    event = props["Events"]["PlanAlertsSqsEventSource"]["Properties"]
    assert event["ScalingConfig"] == {"MaximumConcurrency": props["ReservedConcurrentExecutions"]}
    # the other functions keep Chalice's defaults: no pool taken from the API
    others = [fid for fid, fn in res.items() if fn["Type"] == "AWS::Serverless::Function"
              and "ReservedConcurrentExecutions" in fn["Properties"]]
    assert others == ["PlanAlerts"]
    assert res["APIHandler"]["Properties"]["Timeout"] == 30


def test_every_sqs_consumer_in_app_has_its_queue_in_the_template():
    """A new ``@on_sqs_message`` without a queue here would read a queue no
    stack creates; a queue here without its consumer is refused."""
    from chalice.app import SQSEventConfig

    import app

    consumers = {s.name for s in app.app.event_sources if isinstance(s, SQSEventConfig)}
    assert consumers == {q.consumer for q in rr.QUEUES} == {"send_fanout", "plan_alerts"}
    assert {q.env for q in rr.QUEUES} == {"HEXCAST_FANOUT_QUEUE", "HEXCAST_ALERT_QUEUE"}


@pytest.mark.parametrize("stage", STAGES)
def test_both_stages_render_the_alert_queue_and_the_planner(stage):
    cfg, template = rendered(stage)
    res = template["Resources"]
    assert cfg.timeouts == {"send_fanout": 60, "plan_alerts": 300} and cfg.reserved == {"plan_alerts": 10}
    assert res["AlertQueue"]["Properties"]["QueueName"] == f"hexcast-{stage}-alerts"
    assert res["AlertQueue"]["Properties"]["VisibilityTimeout"] == 1800
    assert res["AlertDeadLetterQueue"]["Properties"]["QueueName"] == f"hexcast-{stage}-alerts-dlq"
    event = res["PlanAlerts"]["Properties"]["Events"]["PlanAlertsSqsEventSource"]["Properties"]
    assert event == {"Queue": {"Fn::Sub": "${AlertQueue.Arn}"}, "ScalingConfig": {"MaximumConcurrency": 10}}
    assert "Events" not in res["PollWeather"]["Properties"]  # its schedule stays Chalice's
    for rid in ("AlertQueue", "AlertDeadLetterQueue"):
        assert {f"{rid}Url", f"{rid}Arn"} <= set(template["Outputs"])


def _config_with(**planner) -> dict:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    fn = config["lambda_functions"]["plan_alerts"]
    for key, value in planner.items():
        if value is None:
            fn.pop(key, None)
        else:
            fn[key] = value
    return config


@pytest.mark.parametrize("planner, why", [
    ({"lambda_timeout": 330}, "not below its lease"),
    ({"lambda_timeout": 50}, "below the planner's lease"),  # 300 s visibility: a retry would find it held
    ({"reserved_concurrency": None}, "no reserved_concurrency"),
    ({"reserved_concurrency": 0}, "no reserved_concurrency"),
], ids=["timeout-past-lease", "visibility-below-lease", "no-reserved-pool", "zero-pool"])
def test_a_planner_that_could_lose_or_starve_alerts_is_refused(planner, why):
    with pytest.raises(SystemExit, match=why):
        rr.stage_config("dev", _config_with(**planner))


def test_a_missing_planner_function_is_refused():
    cfg = rr.stage_config("dev")
    functions = {fid: name for fid, name in rr.chalice_functions().items() if name != "plan_alerts"}
    with pytest.raises(SystemExit, match="no 'plan_alerts' function: the AlertQueue would have no consumer"):
        rr.merge_template(cfg, functions)


def test_package_check_refuses_a_planner_without_its_bounds(packaged):
    """The built template is checked too: the planner's event source on its
    queue, at most its reserved concurrency at once."""
    import copy

    from deploy.package import PackageError, check_template

    template = packaged["template"]
    fns = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    check_template(template, "python3.13", fns)
    for edit, message in [
        (lambda e, p: e.pop("ScalingConfig"), "may invoke unbounded at once"),
        (lambda e, p: p.pop("ReservedConcurrentExecutions"), "reserved concurrency None"),
        (lambda e, p: e.update(Queue={"Fn::Sub": "${FanoutQueue.Arn}"}), "not this template's queue"),
    ]:
        broken = copy.deepcopy(template)
        props = broken["Resources"]["PlanAlerts"]["Properties"]
        edit(props["Events"]["PlanAlertsSqsEventSource"]["Properties"], props)
        with pytest.raises(PackageError, match=message):
            check_template(broken, "python3.13", fns)


def test_schedules_are_in_the_template(packaged):
    res = packaged["template"]["Resources"]
    schedules = {fid: ev["Properties"]["Schedule"] for fid, fn in res.items() if fn["Type"] == "AWS::Serverless::Function"
                 for ev in fn["Properties"].get("Events", {}).values() if ev["Type"] == "Schedule"}
    assert schedules["ReleaseHeld"] == "rate(1 minute)"
    assert schedules["PollWeather"] == "rate(2 minutes)"


# ----------------------------------------------------- parameters, secrets
def test_secrets_and_platform_arns_are_parameters_never_literals(packaged):
    template = packaged["template"]
    params = template["Parameters"]
    for p in rr.PARAMETERS:
        spec = params[p.name]
        assert spec.get("NoEcho", False) is p.secret, p.name
        assert ("Default" in spec) is (not p.required)
    for fid, fn in template["Resources"].items():
        if fn["Type"] != "AWS::Serverless::Function":
            continue
        env = fn["Properties"]["Environment"]["Variables"]
        for p in rr.PARAMETERS:
            assert env[p.env] == {"Ref": p.name}, (fid, p.env)
        for logical, var in rr.TABLE_ENV.items():
            assert env[var] == {"Ref": rr.logical_table_id(logical)}
    config_text = (ROOT / ".chalice" / "config.json").read_text()
    for p in rr.PARAMETERS:
        assert p.env not in config_text
    assert not re.search(r"arn:aws:sns:[a-z0-9-]+:\d{12}", config_text)
    assert not re.search(r"sha256:[0-9a-f]{64}", config_text)
    assert "123456789012" not in json.dumps(template)


def test_platform_arn_parameters_accept_only_the_stages_applications():
    p = next(x for x in rr.PARAMETERS if x.env == "HEXCAST_SNS_FCM_ARN")
    pattern = rr.parameter_pattern("dev", p)
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "arn:aws:sns:eu-west-1:111122223333:app/GCM/hexcast-dev-fcm")
    assert not re.fullmatch(pattern, "arn:aws:sns:eu-west-1:111122223333:app/GCM/hexcast-prod-fcm")
    assert not re.fullmatch(pattern, "arn:aws:sns:eu-west-1:111122223333:app/APNS/hexcast-dev-fcm")


@pytest.mark.parametrize("p", rr.PARAMETERS, ids=lambda p: p.name)
def test_every_parameter_is_a_setting_the_code_reads(p):
    value = {"HEXCAST_SNS_APNS_ARN": "arn:aws:sns:us-east-1:111122223333:app/APNS/hexcast-dev-apns",
             "HEXCAST_SNS_APNS_SANDBOX_ARN": "arn:aws:sns:us-east-1:111122223333:app/APNS_SANDBOX/hexcast-dev-apns-sandbox",
             "HEXCAST_SNS_FCM_ARN": "arn:aws:sns:us-east-1:111122223333:app/GCM/hexcast-dev-fcm",
             "HEXCAST_ADMIN_KEY_HASHES": hash_token("a"), "HEXCAST_APP_KEY_HASHES": hash_token("b"),
             "HEXCAST_COUPON_SECRET": "c" * 40}[p.env]
    assert Settings.from_env({p.env: value}) != Settings.from_env({})


def _hexcast_vars_read_by_the_code() -> set[str]:
    found = set()
    for path in (ROOT / "chalicelib" / "settings.py", ROOT / "chalicelib" / "weather" / "fanout.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"HEXCAST_[A-Z0-9_]*[A-Z0-9]", node.value):
                found.add(node.value)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_every_setting_is_configured_for_the_stage_or_a_parameter(stage):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    configured = set(config.get("environment_variables", {})) | set(config["stages"][stage]["environment_variables"])
    parameters = {p.env for p in rr.PARAMETERS}
    read = _hexcast_vars_read_by_the_code()
    assert read, "found no HEXCAST_* variables in chalicelib/settings.py"
    unaccounted = read - configured - parameters - set(DEFAULTED) - set(LOCAL_ONLY)
    assert not unaccounted, f"settings read {sorted(unaccounted)}: configure them per stage or make them Parameters"
    dead = configured - read
    assert not dead, f".chalice/config.json sets {sorted(dead)}, which no code reads"
    assert not configured & parameters


# ------------------------------------------------------------------ stages
@pytest.mark.parametrize("stage", STAGES)
def test_stage_configuration(stage):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["autogen_policy"] is False
    st = config["stages"][stage]
    env = st["environment_variables"]
    assert st["iam_policy_file"] == f"policy-{stage}.json" and "autogen_policy" not in st
    assert env["HEXCAST_STAGE"] == stage
    assert env["HEXCAST_LOG_LEVEL"] in ("DEBUG", "INFO", "WARNING")
    assert env["HEXCAST_WEATHER_FEED_URL"].startswith("https://api.weather.gov/alerts")
    assert re.fullmatch(r"\S+ \(\S+@\S+\)", env["HEXCAST_WEATHER_USER_AGENT"])  # NWS asks for a contact
    for var in [*rr.TABLE_ENV.values(), *(q.env for q in rr.QUEUES)]:
        assert env[var].startswith(f"hexcast-{stage}-"), var
    assert config["stages"]["prod"]["environment_variables"]["HEXCAST_LOG_LEVEL"] != "DEBUG"


def test_app_debug_is_off():
    import app

    assert app.app.debug is False


# --------------------------------------------------------- the emulator
EMULATED_TYPES = {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::IAM::Role"}
#: What moto's CloudFormation cannot run (the SAM transform, Lambda, API Gateway).
NOT_EMULATED = {"AWS::Serverless::Function", "AWS::Serverless::Api", "AWS::Lambda::Permission"}


def _refs(obj) -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub" and isinstance(v, str):
                out.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", v) if not m.startswith("AWS::"))
            out |= _refs(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _refs(v)
    return out


def emulated_part(template: dict) -> dict:
    """The template without what needs Lambda or the SAM transform."""
    types = {r["Type"] for r in template["Resources"].values()}
    assert types <= EMULATED_TYPES | NOT_EMULATED, types - EMULATED_TYPES - NOT_EMULATED
    keep = {k: v for k, v in template["Resources"].items() if v["Type"] in EMULATED_TYPES}
    for rid, res in keep.items():
        assert _refs(res) <= set(keep), (rid, _refs(res) - set(keep))
        keep[rid] = {k: v for k, v in res.items() if k != "DependsOn"}
    outputs = {k: v for k, v in template.get("Outputs", {}).items() if _refs(v) <= set(keep)}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Parameters": template["Parameters"],
            "Resources": keep, "Outputs": outputs}


@pytest.fixture
def isolated_logging():
    """The app configures the ``hexcast`` logger once per process, at the
    settings' level (dev's is DEBUG): put it back as it was, so later tests
    capture logs as they would have without this one."""
    import logging

    from chalicelib import logs

    names = [getattr(logs, "ROOT", "hexcast"), getattr(logs, "METRICS_LOGGER", None)]
    loggers = [logging.getLogger(n) for n in names if n]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    configured = getattr(logs, "_configured", None)
    yield
    for lg, level, handlers, propagate in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate
    if hasattr(logs, "_configured"):
        logs._configured = configured


@pytest.fixture
def emulated_stack(packaged, monkeypatch, isolated_logging):
    """The template's resources created by moto's CloudFormation, and the
    API function's environment resolved against that stack."""
    from moto import mock_aws

    from chalicelib.push.platform_apps import ensure_platform_applications

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SECURITY_TOKEN": "testing",
                 "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "HEXCAST_ADMIN_KEY", "HEXCAST_APP_KEY"):
        monkeypatch.delenv(k, raising=False)
    template = packaged["template"]
    with mock_aws():
        # Platform applications hold Apple's / Google's credentials: an
        # operator creates them; here the emulator's, named as the policy wants.
        arns = ensure_platform_applications(boto3.client("sns"), STAGE)
        keys = {"admin": secrets.token_urlsafe(24), "app": secrets.token_urlsafe(24)}
        by_env = {**arns, "HEXCAST_ADMIN_KEY_HASHES": hash_token(keys["admin"]),
                  "HEXCAST_APP_KEY_HASHES": hash_token(keys["app"]), "HEXCAST_COUPON_SECRET": secrets.token_hex(24)}
        params = {p.name: by_env[p.env] for p in rr.PARAMETERS}
        for p in rr.PARAMETERS:  # what CloudFormation would check
            spec = template["Parameters"][p.name]
            assert re.fullmatch(spec.get("AllowedPattern", ".*"), params[p.name]), p.name
            assert len(params[p.name]) >= spec.get("MinLength", 0)
        cfn = boto3.client("cloudformation")
        cfn.create_stack(StackName=f"hexcast-{STAGE}", TemplateBody=json.dumps(emulated_part(template)),
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                         Capabilities=["CAPABILITY_IAM"])
        stack = cfn.describe_stacks(StackName=f"hexcast-{STAGE}")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in cfn.describe_stack_resources(StackName=f"hexcast-{STAGE}")["StackResources"]}

        def resolve(value):
            if isinstance(value, str):
                return value
            if "Ref" in value:
                return params[value["Ref"]] if value["Ref"] in params else physical[value["Ref"]]
            rid, attr = value["Fn::GetAtt"]
            assert rid in {q.queue_id for q in rr.QUEUES} and attr == "QueueName", value
            return physical[rid].rsplit("/", 1)[-1]  # a queue's physical id is its URL

        api_env = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
        env = {k: resolve(v) for k, v in api_env.items()}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield {"env": env, "keys": keys, "physical": physical, "stack": stack}


def test_emulated_stack_has_the_tables_indexes_and_queues(emulated_stack):
    env = emulated_stack["env"]
    ddb = boto3.client("dynamodb")
    for logical, var in rr.TABLE_ENV.items():
        desc = ddb.describe_table(TableName=env[var])["Table"]
        assert [k["AttributeName"] for k in desc["KeySchema"]] == [k["AttributeName"] for k in TABLES[logical]["KeySchema"]]
        want = sorted(g["IndexName"] for g in TABLES[logical].get("GlobalSecondaryIndexes", []))
        assert sorted(g["IndexName"] for g in desc.get("GlobalSecondaryIndexes", [])) == want
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    sqs = boto3.client("sqs")
    assert env["HEXCAST_ALERT_QUEUE"] == f"hexcast-{STAGE}-alerts"
    for q in rr.QUEUES:
        url = sqs.get_queue_url(QueueName=env[q.env])["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == 5 and redrive["deadLetterTargetArn"].endswith(f":{env[q.env]}-dlq")
        assert int(attrs["VisibilityTimeout"]) == rr.stage_config(STAGE).visibility_timeout(q)
    groups = {g["logGroupName"] for g in boto3.client("logs").describe_log_groups()["logGroups"]}
    assert {f"/aws/lambda/hexcast-{STAGE}", f"/aws/lambda/hexcast-{STAGE}-send_fanout",
            f"/aws/lambda/hexcast-{STAGE}-plan_alerts"} <= groups


def test_app_pointed_at_the_emulated_stack_registers_pings_and_delivers(emulated_stack):
    """register → fence → campaign → ping → delivery record (sent through
    the stack's FCM application), and a fan-out message through its queue."""
    from chalice.test import Client

    from app import app
    from chalicelib import container as deps_module
    from chalicelib.settings import get_settings, reset_settings

    keys = emulated_stack["keys"]
    admin = {"X-Api-Key": keys["admin"], "Content-Type": "application/json"}
    reset_settings()
    deps_module.set_deps(None)
    try:
        settings = get_settings()
        assert settings.stage == STAGE and settings.devices_table == f"hexcast-{STAGE}-devices"
        with Client(app, stage_name=STAGE, project_dir=str(ROOT)) as client:
            def call(method, path, headers, payload=None):
                r = getattr(client.http, method)(path, headers=headers, body=json.dumps(payload) if payload else None)
                return r.status_code, (json.loads(r.body) if r.body else None)

            status, reg = call("put", "/v1/devices/d1", {"X-Api-Key": keys["app"], "Content-Type": "application/json"},
                               {"platform": "android", "push_token": "tok-d1", "attributes": {"first_name": "Ana"},
                                "consent": {"push": True, "location": True}})
            assert status == 200, reg
            app_h = {"X-Api-Key": keys["app"], "Content-Type": "application/json"}
            if reg.get("device_secret"):
                app_h["X-Device-Secret"] = reg["device_secret"]
            fence = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
                     "properties": {"radius_m": 100, "name": "Shop", "tags": ["shop"]}}
            assert call("put", "/v1/geofences/shop", admin, fence)[0] == 200
            campaign = {"name": "Welcome in", "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]},
                        "message": {"title": "Hi {{ first_name }}", "body": "{{ coupon.percent_off }}% off: {{ coupon.code }}"},
                        "coupon": {"percent_off": 10, "prefix": "SHOP", "valid_hours": 72}}
            assert call("put", "/v1/campaigns/c1", admin, campaign)[0] == 200
            t0 = time.time() - 600
            for step, (lat, lng) in enumerate([(38.40, -122.7), (38.44, -122.7)]):
                status, res = call("post", "/v1/pings", app_h,
                                   {"device_id": "d1", "lat": lat, "lng": lng, "accuracy_m": 5, "timestamp": t0 + 10 * step})
                assert status == 200, res
            result = res["results"][0]
            assert [e["type"] for e in result["events"]] == ["enter"] and len(result["deliveries"]) == 1, result
            status, log = call("get", "/v1/deliveries?device_id=d1", admin)
            assert status == 200
            (record,) = log["deliveries"]
            assert record["status"] == "sent", record
            assert record["title"] == "Hi Ana" and record["coupon_code"].startswith("SHOP-")
            assert call("get", "/v1/campaigns/c1/stats", admin)[1]["sent"] == 1

        # the fan-out sender's and the alert intake's queues are the stack's
        deps = deps_module.get_deps()
        for queue, rid in ((settings.fanout_queue, "FanoutQueue"), (settings.alert_queue, "AlertQueue")):
            deps.queue.send(queue, [f'{{"v": 1, "to": "{rid}"}}'])
            url = emulated_stack["physical"][rid]
            got = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
            assert got[0]["Body"] == f'{{"v": 1, "to": "{rid}"}}'
    finally:
        deps_module.set_deps(None)
        reset_settings()


def test_prod_resources_pass_cfn_lint(tmp_path):
    """dev's full template is linted by `make package`; prod's resources here
    (retained, deletion-protected tables; 90-day logs)."""
    import subprocess
    import sys

    paths = rr.render("prod", tmp_path)
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), str(paths["resources"])], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ the API's error answers
def _definition_extras(stage: str) -> dict:
    _, template = rendered(stage)
    return rr.with_api_errors(template)["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]


@pytest.mark.parametrize("stage", STAGES)
def test_gateway_responses_answer_in_the_documented_error_body(stage):
    """API Gateway's own answers (a path no route has, throttling, its
    default 4xx/5xx) carry ``{"error": {"code", "message", "field"}}``."""
    responses = _definition_extras(stage)["x-amazon-apigateway-gateway-responses"]
    assert {"MISSING_AUTHENTICATION_TOKEN", "UNSUPPORTED_MEDIA_TYPE", "DEFAULT_4XX", "DEFAULT_5XX",
            "REQUEST_TOO_LARGE", "THROTTLED", "INTEGRATION_TIMEOUT"} <= set(responses)
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    assert responses["UNSUPPORTED_MEDIA_TYPE"]["statusCode"] == "415"
    assert "statusCode" not in responses["DEFAULT_4XX"] and "statusCode" not in responses["DEFAULT_5XX"]
    for kind, spec in responses.items():
        template = spec["responseTemplates"]["application/json"]
        # API Gateway expands $context.error.messageString to a quoted JSON string
        body = json.loads(template.replace("$context.error.messageString", '"a message"'))
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, kind
        assert body["error"]["code"] and body["error"]["field"] is None
        assert spec["responseParameters"]["gatewayresponse.header.Content-Type"] == "'application/json'"


def test_every_missing_method_of_every_path_answers_405_listing_the_allowed():
    import app

    paths = _definition_extras("dev")["paths"]
    from chalicelib.api.gateway import HTTP_METHODS

    assert set(paths) == set(app.app.routes)
    for path, methods in app.app.routes.items():
        mocks = paths[path]
        assert {m.upper() for m in mocks} == set(HTTP_METHODS) - set(methods), path
        for op in mocks.values():
            integration = op["x-amazon-apigateway-integration"]
            assert integration["type"] == "mock"
            answer = integration["responses"]["default"]
            assert answer["statusCode"] == "405"
            assert answer["responseParameters"]["method.response.header.Allow"] == "'" + ", ".join(sorted(methods)) + "'"
            body = json.loads(answer["responseTemplates"]["application/json"])
            assert body["error"]["code"] == "method_not_allowed" and body["error"]["message"].endswith(", ".join(sorted(methods)))
            assert [p["name"] for p in op["parameters"]] == re.findall(r"\{([^}]+)\}", path)


def test_the_packaged_api_definition_carries_the_error_answers(packaged):
    body = packaged["template"]["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["x-amazon-apigateway-gateway-responses"] == _definition_extras(STAGE)["x-amazon-apigateway-gateway-responses"]
    pings = body["paths"]["/v1/pings"]
    assert pings["post"]["x-amazon-apigateway-integration"]["type"] == "aws_proxy"  # Chalice's route, kept
    assert pings["delete"]["x-amazon-apigateway-integration"]["type"] == "mock"
