"""``make deploy STAGE=dev``: the ``chalice deploy`` path, idempotent.

1. **Resource stack** ``hexcast-<stage>-resources``: CloudFormation creates or
   updates ``dist/<stage>/resources.json`` (tables, the alert and fan-out
   queues and their dead-letter queues, log groups; rendered from the code).
   Nothing changed → nothing done.
2. **Deploy-time values** from SSM Parameter Store, ``/hexcast/<stage>/…``:
   the platform application ARNs (String, optional), the API key hashes and
   the coupon secret (SecureString, required). They are checked here with the
   same patterns the template's Parameters use.
3. **Functions**: ``chalice deploy --stage <stage>`` through
   :mod:`deploy.chalice_cli` (runtime pinned, wheels for its ABI), with the
   values of step 2 added to the functions' environment — never written to
   ``.chalice/config.json``. Chalice keeps what it created in
   ``.chalice/deployed/<stage>.json`` and updates it in place next time.
4. **Error answers**: API Gateway's own answers (a path no route has, a
   method a path lacks, throttling, …) in the documented error body, merged
   into the API Chalice wrote (``PutRestApi`` mode ``merge``), and the
   stage redeployed (:func:`apply_api_errors`).

``DRY_RUN=1`` (``--dry-run``) prints and validates the plan — config, policy,
template, function names, parameter names — without calling AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import chalice_cli
from deploy.render_resources import (
    CONFIG_FILE,
    PARAMETERS,
    QUEUES,
    ROOT,
    Parameter,
    api_definition_extras,
    api_routes,
    chalice_functions,
    load_config,
    parameter_pattern,
    render,
    ssm_name,
    stage_config,
)

#: CloudFormation's limit for an inline ``TemplateBody``.
TEMPLATE_BODY_LIMIT = 51_200


class DeployError(RuntimeError):
    pass


def resource_stack_name(stage: str) -> str:
    return f"hexcast-{stage}-resources"


@dataclass
class Plan:
    stage: str
    stack: str
    template: Path
    template_body: str
    policy: Path
    runtime: str
    functions: list[str]
    parameters: list[tuple[Parameter, str]]
    chalice_cmd: list[str]
    lines: list[str] = field(default_factory=list)


def make_plan(stage: str) -> Plan:
    """Render and validate everything the deploy needs; no AWS call."""
    config = load_config()
    cfg = stage_config(stage, config)
    st = config["stages"][stage]
    if config.get("autogen_policy", True) or st.get("autogen_policy", False):
        raise DeployError(f"{CONFIG_FILE}: autogen_policy must be false (reviewed policy files only)")
    policy = CONFIG_FILE.parent / st.get("iam_policy_file", f"policy-{stage}.json")
    try:
        json.loads(policy.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"{policy}: {exc}") from exc
    runtime = chalice_cli.runtime()
    functions = chalice_functions()
    template = render(stage, ROOT / "dist" / stage)["resources"]
    body = template.read_text()
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        raise DeployError(f"{template} is {len(body)} bytes, over CloudFormation's inline limit")
    resources = json.loads(body)["Resources"]
    names = sorted(cfg.function_name(n) for n in functions.values())
    plan = Plan(
        stage=stage,
        stack=resource_stack_name(stage),
        template=template,
        template_body=body,
        policy=policy,
        runtime=runtime,
        functions=names,
        parameters=[(p, ssm_name(stage, p)) for p in PARAMETERS],
        chalice_cmd=[sys.executable, "-m", "deploy.chalice_cli", "deploy", "--stage", stage],
    )

    def rel(path: Path) -> Path:
        return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path

    lines = [f"1. CloudFormation stack {plan.stack} from {rel(template)} (create, or update; unchanged → no-op):"]
    for res in resources.values():
        props = res["Properties"]
        if res["Type"] == "AWS::DynamoDB::Table":
            extras = [f"{len(props.get('GlobalSecondaryIndexes', []))} GSIs"]
            if "TimeToLiveSpecification" in props:
                extras.append(f"TTL {props['TimeToLiveSpecification']['AttributeName']}")
            if "PointInTimeRecoverySpecification" in props:
                extras.append("PITR")
            extras.append(f"DeletionPolicy {res['DeletionPolicy']}")
            lines.append(f"     DynamoDB {props['TableName']} ({', '.join(extras)})")
        elif res["Type"] == "AWS::SQS::Queue":
            redrive = props.get("RedrivePolicy")
            extra = f", visibility {props['VisibilityTimeout']} s, dead letters after {redrive['maxReceiveCount']} receives" if redrive else ""
            lines.append(f"     SQS {props['QueueName']}{extra}")
        elif res["Type"] == "AWS::Logs::LogGroup":
            lines.append(f"     Logs {props['LogGroupName']} ({props['RetentionInDays']} days)")
    lines.append(f"2. read SSM parameters (SecureString for secrets) under /hexcast/{stage}/:")
    for p, name in plan.parameters:
        kind = "required, SecureString" if p.secret else "optional, String"
        lines.append(f"     {name} → {p.env} ({kind})")
    lines.append(f"3. {' '.join(['python', *plan.chalice_cmd[1:]])}  (runtime {runtime}, "
                 f"IAM {rel(policy)}, {len(names)} functions: {', '.join(names)})")
    for q in QUEUES:
        pool = cfg.reserved.get(q.consumer)
        extra = f", reserved concurrency {pool}" if pool else ""
        lines.append(f"     {cfg.function_name(q.consumer)} ← SQS {cfg.queue(q)} (timeout {cfg.timeouts[q.consumer]} s{extra})")
    plan.lines = lines
    return plan


def check_value(stage: str, p: Parameter, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``p`` (never echoing a secret), or None."""
    pattern = parameter_pattern(stage, p)
    if p.min_length and len(value) < p.min_length:
        return f"{ssm_name(stage, p)}: at least {p.min_length} characters"
    if pattern and not re.fullmatch(pattern, value):
        shown = "" if p.secret else f" ({value!r})"
        return f"{ssm_name(stage, p)}: must match {pattern}{shown}"
    return None


def read_values(ssm: Any, plan: Plan) -> dict[str, str]:
    """The deploy-time values from SSM → ``{env var: value}``."""
    names = [name for _, name in plan.parameters]
    found: dict[str, str] = {}
    for start in range(0, len(names), 10):  # GetParameters takes 10 names
        resp = ssm.get_parameters(Names=names[start:start + 10], WithDecryption=True)
        found.update({p["Name"]: p["Value"] for p in resp.get("Parameters", [])})
    problems, values = [], {}
    for p, name in plan.parameters:
        value = found.get(name, "")
        if not value:
            if p.required:
                kind = "SecureString" if p.secret else "String"
                problems.append(f"{name} is missing: aws ssm put-parameter --name {name} --type {kind} --value ...")
            values[p.env] = ""
            continue
        why = check_value(plan.stage, p, value)
        if why:
            problems.append(why)
        values[p.env] = value
    if problems:
        raise DeployError("deploy-time values:\n  " + "\n  ".join(problems))
    return values


def ensure_stack(cfn: Any, plan: Plan, say: Callable[[str], None]) -> str:
    """Create or update the resource stack → ``created``/``updated``/``unchanged``."""
    from botocore.exceptions import ClientError

    args = {
        "StackName": plan.stack,
        "TemplateBody": plan.template_body,
        "Tags": [{"Key": "app", "Value": "hexcast"}, {"Key": "stage", "Value": plan.stage}],
    }
    try:
        stack = cfn.describe_stacks(StackName=plan.stack)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" not in str(exc):
            raise
        stack = None
    if stack is not None and stack["StackStatus"] == "ROLLBACK_COMPLETE":
        raise DeployError(f"stack {plan.stack} is ROLLBACK_COMPLETE (its creation failed): read its events, "
                          f"delete it (aws cloudformation delete-stack --stack-name {plan.stack}) and run again")
    if stack is None:
        say(f"creating stack {plan.stack}")
        cfn.create_stack(**args, EnableTerminationProtection=plan.stage != "dev")
        cfn.get_waiter("stack_create_complete").wait(StackName=plan.stack)
        return "created"
    try:
        cfn.update_stack(**args)
    except ClientError as exc:
        if "No updates are to be performed" in str(exc):
            return "unchanged"
        raise
    say(f"updating stack {plan.stack}")
    cfn.get_waiter("stack_update_complete").wait(StackName=plan.stack)
    return "updated"


API_ERRORS_STEP = ("4. API Gateway: merge the error answers (gateway responses, 405 per missing method) "
                   "into the API chalice deploy wrote, and redeploy its stage")


def apply_api_errors(apigw: Any, stage: str, deployed_dir: Path) -> str:
    """Step 4: the API's error answers (gateway responses, a 405 per
    missing method: :func:`~deploy.render_resources.api_definition_extras`)
    merged into the REST API ``chalice deploy`` just wrote — which
    overwrote the previous merge — then a deployment of its stage, since
    gateway responses reach a stage only through one → the API's id."""
    record = deployed_dir / f"{stage}.json"
    try:
        resources = json.loads(record.read_text())["resources"]
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(f"{record}: no record of the API chalice deploy made ({exc})") from exc
    api = next((r for r in resources if r.get("resource_type") == "rest_api"), None)
    if api is None:
        raise DeployError(f"{record}: chalice deploy recorded no rest_api")
    rest_api_id = api["rest_api_id"]
    stage_name = urllib.parse.urlsplit(api.get("rest_api_url", "")).path.strip("/") or "api"
    definition = {"swagger": "2.0", "info": {"title": f"hexcast-{stage}", "version": "1"},
                  **api_definition_extras(api_routes())}
    apigw.put_rest_api(restApiId=rest_api_id, mode="merge", failOnWarnings=True, body=json.dumps(definition).encode())
    apigw.create_deployment(restApiId=rest_api_id, stageName=stage_name, description="hexcast: error answers")
    return rest_api_id


def run_chalice(cmd: list[str], env: dict[str, str]) -> int:
    return subprocess.run(cmd, check=False, cwd=ROOT, env=env).returncode


def deploy(stage: str, *, dry_run: bool = False, cfn: Any = None, ssm: Any = None,
           chalice: Callable[[list[str], dict[str, str]], int] = run_chalice,
           say: Callable[[str], None] = print, apigw: Any = None,
           deployed_dir: Path = CONFIG_FILE.parent / "deployed") -> dict[str, Any]:
    """Carry out (or, dry, only print) the plan → what happened."""
    plan = make_plan(stage)
    say(f"make deploy STAGE={stage}{' (dry run: nothing is changed, AWS is not called)' if dry_run else ''}")
    for line in plan.lines:
        say(line)
    say(API_ERRORS_STEP)
    if dry_run:
        return {"plan": plan, "stack": "dry-run"}
    import boto3

    cfn = cfn or boto3.client("cloudformation")
    ssm = ssm or boto3.client("ssm")
    values = read_values(ssm, plan)  # before changing anything
    stack = ensure_stack(cfn, plan, say)
    say(f"1. stack {plan.stack}: {stack}")
    say(f"2. {sum(1 for v in values.values() if v)} of {len(values)} deploy-time values read from SSM")
    env = dict(os.environ)
    env[chalice_cli.DEPLOY_VALUES_ENV] = json.dumps(values)
    env["HEXCAST_LAMBDA_RUNTIME"] = plan.runtime
    say(f"3. {' '.join(['python', *plan.chalice_cmd[1:]])}")
    rc = chalice(plan.chalice_cmd, env)
    if rc != 0:
        raise DeployError(f"chalice deploy exited {rc}")
    api_id = apply_api_errors(apigw or boto3.client("apigateway"), stage, deployed_dir)
    say(f"4. API {api_id}: error answers merged, stage redeployed")
    return {"plan": plan, "stack": stack, "values": values, "api": api_id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deploy a stage: resource stack, then chalice deploy")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get("DRY_RUN", "") not in ("", "0"))
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        deploy(args.stage, dry_run=args.dry_run)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # no credentials, no region, access denied, ...
        print(f"deploy: AWS: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
