"""Render a stage's CloudFormation resources from the code, so they never drift.

Two templates per stage, both written to ``dist/<stage>/``::

    python -m deploy.render_resources --stage dev     # (make package does this)

``resources.json``
    Standalone: the DynamoDB tables exactly as :data:`chalicelib.store.schema.TABLES`
    defines them (keys, indexes, on-demand billing) plus the TTL attributes of
    :data:`~chalicelib.store.schema.TTL_ATTRIBUTES` and point-in-time recovery
    on the tables that hold state; the SQS queues (:data:`QUEUES`: the alert
    queue the planner consumes, the fan-out queue the sender consumes), each
    with its dead-letter queue; one log group per function (with a
    retention). Table and queue
    names are the stage's environment variables in ``.chalice/config.json``,
    so the functions and the resources always agree. ``make deploy`` creates
    this stack before ``chalice deploy``.

``merge.json``
    The same plus what ``chalice package --merge-template`` adds to the
    functions Chalice generates: the deploy-time values as template
    Parameters (platform application ARNs, API key hashes, the coupon secret:
    never literals in the repo), every function's environment wired to the
    resources (``Ref`` / ``GetAtt``, so CloudFormation creates the tables and
    the queues first), the functions' names (the ones ``chalice deploy`` gives
    them, which the IAM policy's log resources name), and each SQS event
    source pointed at its queue of this template (the planner's limited to its
    reserved concurrency).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.chalice_cli import MIN_SQS_CONCURRENCY

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / ".chalice" / "config.json"

#: Logical table → the settings variable naming it.
TABLE_ENV = {
    "geofences": "HEXCAST_GEOFENCES_TABLE",
    "cells": "HEXCAST_CELLS_TABLE",
    "devices": "HEXCAST_DEVICES_TABLE",
    "campaigns": "HEXCAST_CAMPAIGNS_TABLE",
    "deliveries": "HEXCAST_DELIVERIES_TABLE",
    "alerts": "HEXCAST_ALERTS_TABLE",
}
#: Tables whose loss loses something: point-in-time recovery (35 days);
#: ``cells`` with ``geofences``, so an index is restored with its fences. Not
#: ``alerts``: the feed poller's cache of NWS alerts and conditions, every
#: item under a TTL of hours to days, re-read from the feed within one poll.
STATEFUL_TABLES = frozenset({"geofences", "cells", "devices", "campaigns", "deliveries"})
#: SQS: a message is retried this many times before the dead-letter queue.
MAX_RECEIVE_COUNT = 5
#: AWS's rule for a Lambda event source: visibility timeout ≥ 6 × the timeout.
VISIBILITY_FACTOR = 6
FANOUT_RETENTION_S = 4 * 24 * 3600
#: An accepted alert waits at most this long for its plan (alerts last hours
#: to days; retries end after MAX_RECEIVE_COUNT × the visibility timeout).
ALERT_RETENTION_S = 4 * 24 * 3600
DLQ_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class Queue:
    """An SQS queue of the stage, its dead-letter queue ``<name>-dlq`` and the
    function it feeds (``@on_sqs_message(name=consumer)``)."""

    #: Logical-id prefix: ``<prefix>Queue``, ``<prefix>DeadLetterQueue``.
    prefix: str
    #: The setting that names it (``.chalice/config.json`` per stage).
    env: str
    consumer: str
    retention_s: int
    #: Its consumer must have a ``reserved_concurrency``, and its event
    #: source invokes at most that many at once (never a throttle, which would
    #: count as a receive and move a message towards the dead-letter queue).
    reserved: bool = False

    @property
    def queue_id(self) -> str:
        return f"{self.prefix}Queue"

    @property
    def dlq_id(self) -> str:
        return f"{self.prefix}DeadLetterQueue"

    @property
    def arn(self) -> dict[str, str]:
        """The ARN as the SQS event source names it (a dependency on the
        queue, so CloudFormation creates it first)."""
        return {"Fn::Sub": f"${{{self.queue_id}.Arn}}"}


#: Fan-out chunks (100 devices each) → ``send_fanout``.
FANOUT = Queue("Fanout", "HEXCAST_FANOUT_QUEUE", "send_fanout", FANOUT_RETENTION_S)
#: Accepted weather alerts (intake and poller) → the planner ``plan_alerts``,
#: which may run for minutes per alert: its own, bounded pool of functions.
ALERTS = Queue("Alert", "HEXCAST_ALERT_QUEUE", "plan_alerts", ALERT_RETENTION_S, reserved=True)
QUEUES = (FANOUT, ALERTS)
QUEUE_ENV = FANOUT.env
FANOUT_FUNCTION = FANOUT.consumer
FANOUT_QUEUE_ARN = FANOUT.arn
ALERT_QUEUE_ENV = ALERTS.env
PLANNER_FUNCTION = ALERTS.consumer
ALERT_QUEUE_ARN = ALERTS.arn
#: Stages whose data survives a stack deletion (and whose tables refuse a
#: DeleteTable): everything but a developer's sandbox.
DISPOSABLE_STAGES = frozenset({"dev"})
LOG_RETENTION_DAYS = {"dev": 14}
DEFAULT_LOG_RETENTION_DAYS = 90


@dataclass(frozen=True)
class Parameter:
    """A deploy-time value: a template Parameter (package path) and an SSM
    parameter ``/hexcast/<stage>/<ssm>`` that ``make deploy`` reads."""

    name: str
    env: str
    ssm: str
    description: str
    secret: bool = False
    required: bool = False
    #: SNS platform of a platform application ARN parameter.
    platform: str = ""
    suffix: str = ""
    pattern: str = ""
    min_length: int = 0


_KEY_HASHES = r"^sha256:[0-9a-f]{64}(,sha256:[0-9a-f]{64})?$"
PARAMETERS = (
    Parameter("ApnsPlatformApplicationArn", "HEXCAST_SNS_APNS_ARN", "sns-apns-arn",
              "SNS platform application for APNs (production), or empty", platform="APNS", suffix="apns"),
    Parameter("ApnsSandboxPlatformApplicationArn", "HEXCAST_SNS_APNS_SANDBOX_ARN", "sns-apns-sandbox-arn",
              "SNS platform application for the APNs sandbox, or empty", platform="APNS_SANDBOX", suffix="apns-sandbox"),
    Parameter("FcmPlatformApplicationArn", "HEXCAST_SNS_FCM_ARN", "sns-fcm-arn",
              "SNS platform application for FCM (platform GCM), or empty", platform="GCM", suffix="fcm"),
    Parameter("AdminKeyHashes", "HEXCAST_ADMIN_KEY_HASHES", "admin-key-hashes",
              "sha256:<hex> of the admin API keys, comma-separated (two during a rotation)",
              secret=True, required=True, pattern=_KEY_HASHES),
    Parameter("AppKeyHashes", "HEXCAST_APP_KEY_HASHES", "app-key-hashes",
              "sha256:<hex> of the app API keys, comma-separated (two during a rotation)",
              secret=True, required=True, pattern=_KEY_HASHES),
    Parameter("CouponSecret", "HEXCAST_COUPON_SECRET", "coupon-secret",
              "HMAC secret of the coupon codes (at least 32 characters)", secret=True, required=True, min_length=32),
)


def ssm_name(stage: str, parameter: Parameter) -> str:
    return f"/hexcast/{stage}/{parameter.ssm}"


def platform_app_name(stage: str, parameter: Parameter) -> str:
    """``hexcast-<stage>-apns``: the name the stage's IAM policy allows."""
    return f"hexcast-{stage}-{parameter.suffix}"


def parameter_pattern(stage: str, p: Parameter) -> str:
    if p.platform:
        return rf"^(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{{12}}:app/{p.platform}/{platform_app_name(stage, p)})?$"
    return p.pattern


# ------------------------------------------------------------------ config
@dataclass(frozen=True)
class StageConfig:
    stage: str
    app_name: str
    environment: dict[str, str]
    #: Chalice function name → timeout (s), for the queues' consumers.
    timeouts: dict[str, int]
    #: Chalice function name → reserved concurrency, where one is configured.
    reserved: dict[str, int]

    def table_name(self, logical: str) -> str:
        return self.environment[TABLE_ENV[logical]]

    def queue(self, q: Queue) -> str:
        """The stage's name of queue ``q``."""
        return self.environment[q.env]

    @property
    def queue_name(self) -> str:
        """The fan-out queue's name."""
        return self.queue(FANOUT)

    def visibility_timeout(self, q: Queue) -> int:
        return VISIBILITY_FACTOR * self.timeouts[q.consumer]

    def function_name(self, name: str | None) -> str:
        """The Lambda function's name as ``chalice deploy`` gives it; ``None``
        is the API handler."""
        base = f"{self.app_name}-{self.stage}"
        return base if name is None else f"{base}-{name}"


def load_config(path: Path = CONFIG_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def stage_config(stage: str, config: dict[str, Any] | None = None) -> StageConfig:
    """The stage's merged settings, looked up the way Chalice chains them
    (stage's ``lambda_functions.<name>`` > stage > top level)."""
    config = load_config() if config is None else config
    stages = config.get("stages", {})
    if stage not in stages:
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json (stages: {', '.join(sorted(stages))})")
    st = stages[stage]
    env = {**config.get("environment_variables", {}), **st.get("environment_variables", {})}
    missing = [v for v in [*TABLE_ENV.values(), *(q.env for q in QUEUES)] if not env.get(v)]
    if missing:
        raise SystemExit(f"stage {stage}: .chalice/config.json sets no {', '.join(missing)}")

    def lookup(key: str, function: str, default: Any = None) -> Any:
        for scope in (
            st.get("lambda_functions", {}).get(function, {}),
            st,
            config.get("lambda_functions", {}).get(function, {}),
            config,
        ):
            if key in scope:
                return scope[key]
        return default

    timeouts = {q.consumer: int(lookup("lambda_timeout", q.consumer, 60)) for q in QUEUES}  # Chalice's default: 60
    reserved = {q.consumer: int(lookup("reserved_concurrency", q.consumer))
                for q in QUEUES if lookup("reserved_concurrency", q.consumer) is not None}
    cfg = StageConfig(stage, config["app_name"], env, timeouts, reserved)
    check_consumers(cfg)
    return cfg


def check_consumers(cfg: StageConfig) -> None:
    """The queues' consumers are configured so that their messages are
    retried, not lost: a reserved concurrency where the queue needs one, and
    the planner's timeout below its lease on an alert."""
    from chalicelib.services.alert_planning import PLAN_LEASE_S

    where = f"stage {cfg.stage}: .chalice/config.json"
    for q in QUEUES:
        if q.reserved and cfg.reserved.get(q.consumer, 0) < MIN_SQS_CONCURRENCY:
            raise SystemExit(f"{where} gives {q.consumer} no reserved_concurrency of at least {MIN_SQS_CONCURRENCY} "
                             "(the least an SQS event source can be limited to): it could take the account's "
                             "concurrency from the API")
        if q.retention_s <= MAX_RECEIVE_COUNT * cfg.visibility_timeout(q):
            raise SystemExit(f"{where}: a {q.consumer} message would expire before its {MAX_RECEIVE_COUNT} "
                             f"receives ({cfg.visibility_timeout(q)} s visibility, {q.retention_s} s retention)")
    if cfg.timeouts[PLANNER_FUNCTION] >= PLAN_LEASE_S:
        raise SystemExit(f"{where}: {PLANNER_FUNCTION}'s lambda_timeout {cfg.timeouts[PLANNER_FUNCTION]} s is not "
                         f"below its lease on an alert ({PLAN_LEASE_S:g} s): another consumer could take over an "
                         "alert still being planned")
    if cfg.visibility_timeout(ALERTS) < PLAN_LEASE_S:
        # A plan cut short (timeout, crash) comes back after the visibility
        # timeout: the lease must have run out by then, or the retry only
        # finds the alert held and spends a receive.
        raise SystemExit(f"{where}: the alert queue's visibility timeout {cfg.visibility_timeout(ALERTS)} s "
                         f"({VISIBILITY_FACTOR} × {PLANNER_FUNCTION}'s lambda_timeout) is below the planner's lease "
                         f"({PLAN_LEASE_S:g} s)")


# --------------------------------------------------------------- functions
def chalice_functions() -> dict[str, str | None]:
    """CloudFormation logical id → Chalice function name (``None`` for the API
    handler) of every function ``app.py`` defines, named as ``chalice
    package`` names them. (Which functions exist does not depend on the
    stage, so the app is imported as it is, environment untouched.)"""
    from chalice.utils import to_cfn_resource_name

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app as app_module

    app = app_module.app
    out: dict[str, str | None] = {}
    if app.routes:
        out["APIHandler"] = None
    for source in app.event_sources:
        out[to_cfn_resource_name(source.name)] = source.name
    for fn in app.pure_lambda_functions:
        out[to_cfn_resource_name(fn.name)] = fn.name
    return out


def api_routes() -> dict[str, list[str]]:
    """Every route path of ``app.py`` → its methods."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app as app_module

    return {path: sorted(methods) for path, methods in app_module.app.routes.items()}


def api_definition_extras(routes: dict[str, list[str]]) -> dict[str, Any]:
    """What the API's OpenAPI definition gets on top of Chalice's: the
    gateway responses (a path no route has → 404, and API Gateway's other
    own answers, in the documented error body) and, per path, a mock 405
    for each method it lacks (:mod:`chalicelib.api.gateway`). Part of the
    definition, so a change redeploys the stage."""
    from chalicelib.api.gateway import method_not_allowed_operations, swagger_gateway_responses

    return {"x-amazon-apigateway-gateway-responses": swagger_gateway_responses(),
            "paths": method_not_allowed_operations(routes)}


def with_api_errors(merge: dict[str, Any], routes: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The merge template with the API's error answers merged into the
    definition Chalice generates (``RestAPI``'s ``DefinitionBody``)."""
    routes = api_routes() if routes is None else routes
    merge["Resources"]["RestAPI"] = {"Properties": {"DefinitionBody": api_definition_extras(routes)}}
    return merge


# --------------------------------------------------------------- templates
def logical_table_id(logical: str) -> str:
    return f"{logical.capitalize()}Table"


def table_resource(stage: str, logical: str, physical: str) -> dict[str, Any]:
    """``AWS::DynamoDB::Table`` from the ``CreateTable`` arguments in
    ``TABLES`` (their names are CloudFormation's property names)."""
    from chalicelib.store.schema import TABLES, TTL_ATTRIBUTES

    props: dict[str, Any] = {"TableName": physical, **copy.deepcopy(TABLES[logical])}
    if logical in TTL_ATTRIBUTES:
        props["TimeToLiveSpecification"] = {"AttributeName": TTL_ATTRIBUTES[logical], "Enabled": True}
    if logical in STATEFUL_TABLES:
        props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    disposable = stage in DISPOSABLE_STAGES
    props["DeletionProtectionEnabled"] = not disposable
    props["Tags"] = [{"Key": "app", "Value": "hexcast"}, {"Key": "stage", "Value": stage}]
    policy = "Delete" if disposable else "Retain"
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": policy, "UpdateReplacePolicy": policy, "Properties": props}


def log_group_id(logical_function_id: str) -> str:
    return f"{logical_function_id}LogGroup"


def queue_resources(cfg: StageConfig, q: Queue, transient: dict[str, str]) -> dict[str, Any]:
    """``q`` and its dead-letter queue: a message received
    :data:`MAX_RECEIVE_COUNT` times without success moves there."""
    name = cfg.queue(q)
    return {
        q.dlq_id: {
            "Type": "AWS::SQS::Queue",
            **transient,
            "Properties": {
                "QueueName": f"{name}-dlq",
                "MessageRetentionPeriod": DLQ_RETENTION_S,
                "SqsManagedSseEnabled": True,
            },
        },
        q.queue_id: {
            "Type": "AWS::SQS::Queue",
            **transient,
            "Properties": {
                "QueueName": name,
                "VisibilityTimeout": cfg.visibility_timeout(q),
                "MessageRetentionPeriod": q.retention_s,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [q.dlq_id, "Arn"]},
                    "maxReceiveCount": MAX_RECEIVE_COUNT,
                },
            },
        },
    }


def resources_template(cfg: StageConfig, functions: dict[str, str | None]) -> dict[str, Any]:
    """The standalone template: tables, queues, log groups, outputs."""
    from chalicelib.store.schema import TABLES

    if set(TABLES) != set(TABLE_ENV):
        raise SystemExit(f"schema.TABLES has {sorted(TABLES)}, deploy/render_resources.py knows {sorted(TABLE_ENV)}")
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for logical in TABLES:
        rid = logical_table_id(logical)
        resources[rid] = table_resource(cfg.stage, logical, cfg.table_name(logical))
        outputs[rid] = {"Description": f"{logical} table", "Value": {"Ref": rid}}
        outputs[f"{rid}Arn"] = {"Value": {"Fn::GetAtt": [rid, "Arn"]}}

    # Queues and log groups go with the stack: their messages live minutes
    # to hours, and a retained log group would block the next stack of the
    # same name.
    transient = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}
    for q in QUEUES:
        resources.update(queue_resources(cfg, q, transient))
        for rid in (q.queue_id, q.dlq_id):
            outputs[f"{rid}Url"] = {"Value": {"Ref": rid}}
            outputs[f"{rid}Arn"] = {"Value": {"Fn::GetAtt": [rid, "Arn"]}}

    retention = LOG_RETENTION_DAYS.get(cfg.stage, DEFAULT_LOG_RETENTION_DAYS)
    for fid, name in sorted(functions.items()):
        resources[log_group_id(fid)] = {
            "Type": "AWS::Logs::LogGroup",
            **transient,
            "Properties": {"LogGroupName": f"/aws/lambda/{cfg.function_name(name)}", "RetentionInDays": retention},
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"hexcast {cfg.stage}: tables, queues and log groups "
                       "(rendered by deploy/render_resources.py from chalicelib/store/schema.py and .chalice/config.json)",
        "Resources": resources,
        "Outputs": outputs,
    }


def template_parameters(stage: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in PARAMETERS:
        spec: dict[str, Any] = {"Type": "String", "Description": f"{p.description}; kept in SSM {ssm_name(stage, p)}"}
        if p.secret:
            spec["NoEcho"] = True
        if not p.required:
            spec["Default"] = ""
        pattern = parameter_pattern(stage, p)
        if pattern:
            spec["AllowedPattern"] = pattern
            spec["ConstraintDescription"] = f"must match {pattern}"
        if p.min_length:
            spec["MinLength"] = p.min_length
        out[p.name] = spec
    return out


def function_environment() -> dict[str, Any]:
    """What the merge sets in every function's environment (on top of the
    stage's literal variables Chalice writes)."""
    env: dict[str, Any] = {TABLE_ENV[t]: {"Ref": logical_table_id(t)} for t in TABLE_ENV}
    env.update({q.env: {"Fn::GetAtt": [q.queue_id, "QueueName"]} for q in QUEUES})
    env.update({p.env: {"Ref": p.name} for p in PARAMETERS})
    return env


def merge_template(cfg: StageConfig, functions: dict[str, str | None]) -> dict[str, Any]:
    """The ``--merge-template`` of ``chalice package``: resources, parameters
    and the wiring of the functions Chalice generates."""
    from chalice.utils import to_cfn_resource_name

    template = resources_template(cfg, functions)
    template["Parameters"] = template_parameters(cfg.stage)
    env = function_environment()
    consumers = {q.consumer: q for q in QUEUES}
    for fid, name in functions.items():
        override: dict[str, Any] = {
            "DependsOn": [log_group_id(fid)],
            "Properties": {"FunctionName": cfg.function_name(name), "Environment": {"Variables": dict(env)}},
        }
        q = consumers.get(name or "")
        if q is not None:
            # Chalice writes the queue's ARN as an ``Fn::Sub`` from its name;
            # the merge is a deep merge of dicts, so the same key replaces it.
            event: dict[str, Any] = {"Queue": q.arn}
            if q.reserved:
                event["ScalingConfig"] = {"MaximumConcurrency": cfg.reserved[q.consumer]}
            override["Properties"]["Events"] = {f"{to_cfn_resource_name(q.consumer)}SqsEventSource": {"Properties": event}}
        template["Resources"][fid] = override
    for q in QUEUES:
        if q.consumer not in functions.values():
            raise SystemExit(f"app.py defines no {q.consumer!r} function: the {q.queue_id} would have no consumer")
    return template


def queue_consumers() -> dict[str, Queue]:
    """CloudFormation logical id of each queue's consumer → its queue."""
    from chalice.utils import to_cfn_resource_name

    return {to_cfn_resource_name(q.consumer): q for q in QUEUES}


def render(stage: str, out_dir: Path) -> dict[str, Path]:
    """Write ``resources.json`` and ``merge.json`` for ``stage`` into ``out_dir``."""
    cfg = stage_config(stage)
    functions = chalice_functions()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"resources": out_dir / "resources.json", "merge": out_dir / "merge.json"}
    merge = with_api_errors(merge_template(cfg, functions))
    for kind, template in (("resources", resources_template(cfg, functions)), ("merge", merge)):
        paths[kind].write_text(json.dumps(template, indent=2, sort_keys=False) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--out", type=Path, help="default: dist/<stage>")
    args = parser.parse_args(argv)
    paths = render(args.stage, args.out or ROOT / "dist" / args.stage)
    for path in paths.values():
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
