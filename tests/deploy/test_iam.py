"""Least privilege: the stage policies allow every AWS call the code makes —
found by reading ``chalicelib/`` (AST), not by a list kept by hand — on the
stage's own resources, and nothing else.

A call is any ``<client>.<method>`` where the receiver is a boto3 client
(``client``, ``self.client``, ``self._client``, ``sns_client``, …), passed
or called (``self._call(self.client.query, …)``), and any
``self._call("publish", …)`` / ``getattr(client, "…")`` by name. Each
method is resolved against botocore's models of DynamoDB, SNS and SQS
(``client.meta.method_to_api_mapping``) and mapped to its IAM action
(``batch_get_item`` → ``dynamodb:BatchGetItem``; SQS's ``send_message_batch``
is authorised by ``sqs:SendMessage``).
"""

from __future__ import annotations

import ast
import fnmatch
import json
from functools import cache

import boto3
import pytest

from chalicelib.store.schema import TABLES
from deploy import render_resources as rr
from tests.deploy.conftest import ROOT

SERVICES = ("dynamodb", "sns", "sqs")
#: boto3 client attributes that are not AWS operations.
CLIENT_HELPERS = {"meta", "exceptions", "can_paginate", "close", "get_paginator", "get_waiter", "waiter_names"}
#: API operations whose IAM action has another name.
IAM_ALIASES = {
    "sqs:SendMessageBatch": {"sqs:SendMessage"},
    "sqs:DeleteMessageBatch": {"sqs:DeleteMessage"},
    "sqs:ChangeMessageVisibilityBatch": {"sqs:ChangeMessageVisibility"},
    "dynamodb:TransactWriteItems": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                                    "dynamodb:ConditionCheckItem"},
    "dynamodb:TransactGetItems": {"dynamodb:GetItem"},
}
#: Actions no code calls but the platform needs, with the reason.
PLATFORM_ACTIONS = {
    "logs:CreateLogStream": "Lambda writes the function's logs (the log groups are in the template)",
    "logs:PutLogEvents": "Lambda writes the function's logs",
    "sqs:ReceiveMessage": "the event source mappings (send_fanout, plan_alerts) poll their queues with the function's role",
    "sqs:DeleteMessage": "an event source mapping deletes a message once its function returns",
    "sqs:GetQueueAttributes": "an event source mapping reads its queue's attributes",
}
#: Functions in chalicelib that create resources — for the local stack and
#: the tests only, never run in Lambda (test_setup_only_functions_...).
SETUP_ONLY = {
    ("chalicelib/store/schema.py", "create_tables"): "tables are the template's",
    ("chalicelib/store/schema.py", "_enable_ttl"): "TTL is the template's",
    ("chalicelib/push/platform_apps.py", "ensure_platform_applications"): "platform apps hold Apple/Google credentials: created by an operator",
    ("chalicelib/push/platform_apps.py", "_existing_applications"): "as above",
}
ACCOUNT, REGION = "123456789012", "eu-west-1"
#: Helpers that take the client operation as their first argument, a string:
#: ``store.table.Table.call("get_item", ...)``, ``Table.pages("scan", ...)``.
TABLE_CALLS = frozenset({"_call", "call", "call_if", "_raw", "pages", "items"})


@cache
def operations() -> dict[str, dict[str, str]]:
    """service → {python method: API operation} from botocore's models."""
    out = {}
    for svc in SERVICES:
        client = boto3.client(svc, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        out[svc] = dict(client.meta.method_to_api_mapping)
    return out


def _is_client(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return "client" in name.lower() or name.lower() in SERVICES


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    owner: dict[ast.AST, str] = {}

    def visit(node, current):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else current
            owner[child] = name
            visit(child, name)

    visit(tree, "")
    return owner


def client_calls() -> dict[tuple[str, str], list[str]]:
    """(method, "file:function") of every client call in chalicelib/ → where."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            method = None
            if isinstance(node, ast.Attribute) and _is_client(node.value):
                method = node.attr
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in TABLE_CALLS:
                    method = node.args[0].value
                elif isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) > 1 \
                        and _is_client(node.args[0]) and isinstance(node.args[1], ast.Constant):
                    method = node.args[1].value
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("get_paginator", "get_waiter") and _is_client(node.func.value) \
                    and node.args and isinstance(node.args[0], ast.Constant):
                kind = "paginator" if node.func.attr == "get_paginator" else "waiter"
                found.setdefault((f"{kind}:{node.args[0].value}", rel), []).append(f"{rel}:{owner.get(node, '')}")
                continue
            if method is None or method.startswith("__"):
                continue
            found.setdefault((method, rel), []).append(f"{rel}:{owner.get(node, '')}")
    return found


def _waiter_operation(svc: str, waiter: str) -> str:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_waiter_model(svc)
    for name in model.waiter_names:
        if xform_name(name) == waiter:
            return model.get_waiter(name).operation
    raise AssertionError(f"no waiter {waiter} in {svc}")


def resolve(method: str) -> tuple[str, str] | None:
    """A client method → (service, API operation), or None for a helper."""
    if method.startswith(("paginator:", "waiter:")):
        kind, name = method.split(":", 1)
        matches = [svc for svc in SERVICES if name in operations()[svc] or kind == "waiter"]
        if kind == "waiter":
            for svc in SERVICES:
                try:
                    return svc, _waiter_operation(svc, name)
                except AssertionError:
                    continue
            raise AssertionError(f"unknown waiter {name}")
        assert len(matches) == 1, (method, matches)
        return matches[0], operations()[matches[0]][name]
    if method in CLIENT_HELPERS:
        return None
    matches = [svc for svc in SERVICES if method in operations()[svc]]
    assert matches, (f"`{method}` is called on a client but is no DynamoDB, SNS or SQS operation: if it is "
                     "another service's, add the service here and its actions to the policies")
    assert len(matches) == 1, f"`{method}` is an operation of {matches}: say which client in this test"
    return matches[0], operations()[matches[0]][method]


def iam_actions(svc: str, api: str) -> set[str]:
    action = f"{svc}:{api}"
    return IAM_ALIASES.get(action, {action})


def runtime_actions() -> dict[str, list[str]]:
    """IAM action → where the code needs it (setup-only functions excluded)."""
    out: dict[str, list[str]] = {}
    for (method, rel), where in client_calls().items():
        where = [w for w in where if tuple(w.split(":", 1)) not in SETUP_ONLY]
        if not where:
            continue
        resolved = resolve(method)
        if resolved is None:
            continue
        for action in iam_actions(*resolved):
            out.setdefault(action, []).extend(where)
    return out


# ------------------------------------------------------------ the policy
def policy(stage: str) -> dict:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return json.loads((ROOT / ".chalice" / config["stages"][stage]["iam_policy_file"]).read_text())


def _as_list(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def allows(doc: dict, action: str, resource: str) -> bool:
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(st["Action"])) and \
                any(fnmatch.fnmatchcase(resource, r) for r in _as_list(st["Resource"])):
            return True
    return False


def policy_actions(doc: dict) -> set[str]:
    return {a for st in doc["Statement"] for a in _as_list(st["Action"])}


def stage_resources(stage: str) -> dict[str, list[str]]:
    """Concrete ARNs of the stage (another account and region than moto's)."""
    cfg = rr.stage_config(stage)
    tables = [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{cfg.table_name(t)}" for t in TABLES]
    indexes = [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{cfg.table_name(t)}/index/{g['IndexName']}"
               for t, spec in TABLES.items() for g in spec.get("GlobalSecondaryIndexes", [])]
    apps = [(p.platform, rr.platform_app_name(stage, p)) for p in rr.PARAMETERS if p.platform]
    functions = rr.chalice_functions().values()
    return {
        "table": tables,
        "index": indexes,
        "app": [f"arn:aws:sns:{REGION}:{ACCOUNT}:app/{plat}/{name}" for plat, name in apps],
        "endpoint": [f"arn:aws:sns:{REGION}:{ACCOUNT}:endpoint/{plat}/{name}/0c6b4d3e-1f2a-3b4c-5d6e-7f8091a2b3c4"
                     for plat, name in apps],
        "queue": [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{cfg.queue(q)}" for q in rr.QUEUES],
        "logs": [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{cfg.function_name(n)}:log-stream:2026/11/23/[$LATEST]abc"
                 for n in functions],
    }


def resources_for(action: str, res: dict[str, list[str]]) -> list[str]:
    """Where an action must be allowed: every resource it may touch."""
    svc, api = action.split(":")
    if svc == "dynamodb":
        return res["table"] + (res["index"] if api == "Query" else [])
    if svc == "sns":
        return res["app"] if api == "CreatePlatformEndpoint" else res["endpoint"]
    if svc == "sqs":
        return res["queue"]
    if svc == "logs":
        return res["logs"]
    raise AssertionError(action)


# ------------------------------------------------------------------ tests
def test_the_scan_finds_the_calls_we_know_of():
    actions = runtime_actions()
    for known in ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:UpdateItem",
                  "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan",
                  "sns:Publish", "sns:CreatePlatformEndpoint", "sns:GetEndpointAttributes",
                  "sqs:SendMessage", "sqs:GetQueueUrl"):
        assert known in actions, known
    # the setup-only calls were found, then excluded
    calls = {m for m, _ in client_calls()}
    assert {"create_table", "create_platform_application"} <= calls
    assert "dynamodb:CreateTable" not in actions and "sns:CreatePlatformApplication" not in actions


@pytest.mark.parametrize("stage", ("dev", "prod"))
def test_policy_allows_every_call_the_code_makes_on_the_stages_resources(stage):
    doc, res = policy(stage), stage_resources(stage)
    missing = []
    for action, where in sorted(runtime_actions().items()):
        for arn in resources_for(action, res):
            if not allows(doc, action, arn):
                missing.append(f"{action} on {arn} (called in {min(where)})")
    assert not missing, "\n".join(missing)
    for action in PLATFORM_ACTIONS:
        for arn in resources_for(action, res):
            assert allows(doc, action, arn), (action, arn)


@pytest.mark.parametrize("stage", ("dev", "prod"))
def test_policy_grants_no_action_the_code_never_calls(stage):
    granted = policy_actions(policy(stage))
    needed = set(runtime_actions()) | set(PLATFORM_ACTIONS)
    assert not [a for a in granted if "*" in a or "?" in a], granted
    assert granted - needed == set(), f"granted but never called: {sorted(granted - needed)}"


@pytest.mark.parametrize("stage", ("dev", "prod"))
def test_policy_names_only_the_stages_resources(stage):
    doc = policy(stage)
    other = next(s for s in ("dev", "prod") if s != stage)
    for st in doc["Statement"]:
        for arn in _as_list(st["Resource"]):
            assert arn != "*" and f"hexcast-{stage}" in arn, arn
            svc = arn.split(":")[2]
            assert svc in {a.split(":")[0] for a in _as_list(st["Action"])}, (st["Sid"], arn)
    # nothing of the other stage, nor a neighbour's function or table
    other_res = stage_resources(other)
    for action in sorted(policy_actions(doc)):
        for arn in resources_for(action, other_res):
            assert not allows(doc, action, arn), (action, arn)
    assert not allows(doc, "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/hexcast-{stage}-geofences-old")
    assert not allows(doc, "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/someone-else:log-stream:x")
    assert not allows(doc, "dynamodb:Scan", stage_resources(stage)["index"][0])  # the code queries indexes only


@pytest.mark.parametrize("stage", ("dev", "prod"))
def test_every_queue_is_sent_to_and_consumed_under_the_policy(stage):
    """Both queues: the API and the poller send to the alert queue, the
    planner to the fan-out queue; each consumer's event source receives and
    deletes on its own queue — and no queue of another name is allowed."""
    doc, cfg = policy(stage), rr.stage_config(stage)
    names = {cfg.queue(q) for q in rr.QUEUES}
    assert names == {f"hexcast-{stage}-fanout", f"hexcast-{stage}-alerts"}
    for name in names:
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        for action in ("sqs:SendMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                       "sqs:GetQueueAttributes"):
            assert allows(doc, action, arn), (action, arn)
        # the dead-letter queues are for operators: nothing sends to or reads them
        assert not allows(doc, "sqs:ReceiveMessage", f"{arn}-dlq") and not allows(doc, "sqs:SendMessage", f"{arn}-dlq")
    for action in ("sqs:SendMessage", "sqs:ReceiveMessage"):
        assert not allows(doc, action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:hexcast-{stage}-alerts-old")


def test_setup_only_functions_are_never_called_by_the_deployed_code():
    """create_tables / ensure_platform_applications may keep their
    CreateTable / CreatePlatformApplication calls only while nothing that
    Lambda runs reaches them."""
    names = {fn for _, fn in SETUP_ONLY}
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]:
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            ref = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else \
                node.name if isinstance(node, ast.alias) else None
            if ref in names and (rel, owner.get(node, "")) not in SETUP_ONLY:
                offenders.append(f"{rel}:{getattr(node, 'lineno', '?')} uses {ref}")
    assert not offenders, offenders


def test_packaged_roles_carry_the_stage_policy(packaged):
    doc = policy("dev")
    roles = [r for r in packaged["template"]["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for role in roles:
        (inline,) = role["Properties"]["Policies"]
        assert inline["PolicyDocument"] == doc
        assert "ManagedPolicyArns" not in role["Properties"]
