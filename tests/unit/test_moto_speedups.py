"""``tools.moto_speedups`` changes moto's speed, never its answers.

The same Queries — key conditions alone, ``begins_with``/``between``/
comparisons on sort keys (string and number), global secondary indexes,
filters, projections, ``Select=COUNT``, ``Limit`` + ``ExclusiveStartKey``
pagination, ``ScanIndexForward=False``, a missing partition — run on one moto
table with and without the patch, and every page (items,
``LastEvaluatedKey``, counts) must be the same. The patch is applied only on
the pinned moto release.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from tools import moto_speedups

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def unpatched_after() -> Iterator[None]:
    """Whatever a test does, leave the patch as the suite had it."""
    was = moto_speedups.is_applied()
    yield
    moto_speedups.remove()
    if was:
        assert moto_speedups.apply()


@pytest.fixture
def client(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        c = boto3.client("dynamodb", region_name="us-east-1")
        c.create_table(
            TableName="str",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "g", "AttributeType": "S"},
                {"AttributeName": "gn", "AttributeType": "N"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_g",
                    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "gn", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        c.create_table(
            TableName="num",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "n", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
        )
        c.create_table(
            TableName="hash_only",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for p in range(6):
            for k in range(23):
                kind = ("a", "b", "ab", "c")[k % 4]
                c.put_item(
                    TableName="str",
                    Item={
                        "pk": {"S": f"p{p}"},
                        "sk": {"S": f"{kind}#{(k * 7) % 23:03d}"},
                        "g": {"S": f"g{k % 3}"},
                        "gn": {"N": str((k * 5 + p) % 17)},
                        "v": {"N": str(k)},
                        **({"flag": {"BOOL": k % 2 == 0}} if k % 5 else {}),
                    },
                )
                c.put_item(TableName="num", Item={"pk": {"S": f"p{p}"}, "n": {"N": str((k * 11) % 23 - 5)}, "v": {"S": "x" * k}})
            c.put_item(TableName="hash_only", Item={"pk": {"S": f"p{p}"}, "v": {"N": str(p)}})
        yield c


def S(v: str) -> dict:
    return {"S": v}


def N(v: int) -> dict:
    return {"N": str(v)}


QUERIES: list[dict[str, Any]] = [
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("p2")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("nope")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)", "ExpressionAttributeValues": {":p": S("p1"), ":b": S("a")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)", "ExpressionAttributeValues": {":p": S("p1"), ":b": S("ab#")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p AND sk BETWEEN :lo AND :hi", "ExpressionAttributeValues": {":p": S("p3"), ":lo": S("a#005"), ":hi": S("b#015")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p AND sk > :lo", "ExpressionAttributeValues": {":p": S("p0"), ":lo": S("b")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p AND sk <= :hi", "ExpressionAttributeValues": {":p": S("p0"), ":hi": S("ab#010")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("p4")}, "ScanIndexForward": False},
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "FilterExpression": "v > :v AND attribute_exists(flag)", "ExpressionAttributeValues": {":p": S("p5"), ":v": N(6)}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "ProjectionExpression": "sk, v", "ExpressionAttributeValues": {":p": S("p2")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "Select": "COUNT", "ExpressionAttributeValues": {":p": S("p2")}},
    {"TableName": "str", "KeyConditionExpression": "pk = :p", "ConsistentRead": True, "ExpressionAttributeValues": {":p": S("p1")}},
    {"TableName": "str", "IndexName": "by_g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": S("g1")}},
    {"TableName": "str", "IndexName": "by_g", "KeyConditionExpression": "g = :g AND gn BETWEEN :a AND :b", "ExpressionAttributeValues": {":g": S("g0"), ":a": N(3), ":b": N(11)}, "ScanIndexForward": False},
    {"TableName": "num", "KeyConditionExpression": "pk = :p AND n BETWEEN :a AND :b", "ExpressionAttributeValues": {":p": S("p1"), ":a": N(-3), ":b": N(9)}},
    {"TableName": "num", "KeyConditionExpression": "pk = :p AND n < :a", "ExpressionAttributeValues": {":p": S("p0"), ":a": N(2)}, "ScanIndexForward": False},
    {"TableName": "num", "KeyConditionExpression": "pk = :p", "FilterExpression": "size(v) > :s", "ExpressionAttributeValues": {":p": S("p3"), ":s": N(8)}},
    {"TableName": "hash_only", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("p2")}},
]
LIMITS = (None, 2, 5)


def pages(client: Any, query: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
    """Every page of a paginated Query: items, counts and LastEvaluatedKey."""
    out: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        args = dict(query)
        if limit is not None:
            args["Limit"] = limit
        if start is not None:
            args["ExclusiveStartKey"] = start
        r = client.query(**args)
        out.append({k: r.get(k) for k in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
        start = r.get("LastEvaluatedKey")
        if start is None or len(out) > 200:
            return out


def every_answer(client: Any) -> list[list[dict[str, Any]]]:
    return [pages(client, q, limit) for q in QUERIES for limit in LIMITS]


def test_patched_queries_answer_exactly_as_moto_does(client: Any, unpatched_after: None) -> None:
    moto_speedups.remove()
    assert not moto_speedups.is_applied()
    plain = every_answer(client)
    assert moto_speedups.apply()
    patched = every_answer(client)
    assert len(plain) == len(QUERIES) * len(LIMITS)
    for q, (a, b) in enumerate(zip(plain, patched)):
        assert a == b, QUERIES[q // len(LIMITS)]
    # The set is not vacuous: pagination, empty answers and filtered pages occur.
    assert any(len(p) > 2 for p in plain)
    assert any(p[0]["Count"] == 0 for p in plain)
    assert any(page["ScannedCount"] != page["Count"] for p in plain for page in p)


def test_the_patch_is_the_pinned_release_of_requirements_dev() -> None:
    pins = re.findall(r"^moto(?:\[[^\]]*\])?==(\S+)", (REPO / "requirements-dev.txt").read_text(), re.M)
    assert pins == [moto_speedups.PINNED_MOTO]


def test_another_moto_release_is_left_alone_with_a_warning(unpatched_after: None, monkeypatch: pytest.MonkeyPatch) -> None:
    moto_speedups.remove()
    original = Table.query
    monkeypatch.setattr(moto_speedups, "installed_moto", lambda: "5.3.0")
    with pytest.warns(moto_speedups.MotoVersionWarning, match="5.3.0.*not patching"):
        assert moto_speedups.apply() is False
    assert Table.query is original and not moto_speedups.is_applied()


def test_the_pinned_release_is_patched_once_and_quietly(unpatched_after: None) -> None:
    moto_speedups.remove()
    original = Table.query
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert moto_speedups.apply() is True
        patched = Table.query
        assert patched is not original
        assert moto_speedups.apply() is True  # idempotent
    assert Table.query is patched
    moto_speedups.remove()
    assert Table.query is original


def _transactions(client: Any) -> list[Any]:
    """A transaction that commits, then ones cancelled by a condition after
    earlier writes of the same transaction (which must be rolled back): the
    answers and the whole table after each."""
    key = lambda pk, sk: {"pk": S(pk), "sk": S(sk)}  # noqa: E731
    txs = [
        [{"Put": {"TableName": "str", "Item": {**key("t1", "a"), "v": N(1)}}},
         {"Update": {"TableName": "str", "Key": key("t1", "b"), "UpdateExpression": "SET v = :v",
                     "ExpressionAttributeValues": {":v": N(2)}}}],
        [{"Put": {"TableName": "str", "Item": {**key("t1", "c"), "v": N(3)}}},
         {"Update": {"TableName": "str", "Key": key("t1", "a"), "UpdateExpression": "SET v = :v",
                     "ExpressionAttributeValues": {":v": N(9)}}},
         {"Delete": {"TableName": "str", "Key": key("t1", "b")}},
         {"ConditionCheck": {"TableName": "str", "Key": key("t1", "z"), "ConditionExpression": "attribute_exists(pk)"}}],
        [{"Put": {"TableName": "str", "Item": {**key("t1", "a"), "v": N(5)}, "ConditionExpression": "attribute_not_exists(pk)"}}],
    ]
    out: list[Any] = []
    for tx in txs:
        try:
            client.transact_write_items(TransactItems=tx)
            out.append("ok")
        except client.exceptions.TransactionCanceledException as exc:
            out.append([r.get("Code") for r in exc.response.get("CancellationReasons", [])])
        out.append(sorted(client.query(TableName="str", KeyConditionExpression="pk = :p",
                                       ExpressionAttributeValues={":p": S("t1")})["Items"], key=str))
    return out


def test_patched_transactions_commit_and_roll_back_exactly_as_moto_does(client: Any, unpatched_after: None) -> None:
    moto_speedups.remove()
    plain = _transactions(client)
    for sk in ("a", "b", "c"):
        client.delete_item(TableName="str", Key={"pk": S("t1"), "sk": S(sk)})
    assert moto_speedups.apply()
    patched = _transactions(client)
    assert plain == patched
    assert plain[2] != "ok" and plain[4] != "ok"  # the cancelled ones: rolled back, the table as before
    assert plain[3] == plain[1] == plain[5]


GSI_QUERIES = [q for q in QUERIES if q.get("IndexName")] + [
    {"TableName": "str", "IndexName": "by_g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": S("gnew")}},
]


def _gsi_answers(client: Any) -> list[Any]:
    return [pages(client, q, limit) for q in GSI_QUERIES for limit in LIMITS]


def _writes(client: Any) -> Iterator[str]:
    """Every way a write reaches a table, each changing what the index holds."""
    key = lambda pk, sk: {"pk": S(pk), "sk": S(sk)}  # noqa: E731
    client.put_item(TableName="str", Item={**key("w", "1"), "g": S("g1"), "gn": N(4), "v": N(1)})
    yield "put"
    client.update_item(TableName="str", Key=key("w", "1"), UpdateExpression="SET g = :g",
                       ExpressionAttributeValues={":g": S("gnew")})
    yield "update moves an item to another index partition"
    client.update_item(TableName="str", Key=key("p2", "a#014"), UpdateExpression="SET gn = :n",
                       ExpressionAttributeValues={":n": N(16)})
    yield "update in place of an index sort key"
    client.delete_item(TableName="str", Key=key("w", "1"))
    yield "delete"
    client.batch_write_item(RequestItems={"str": [
        {"PutRequest": {"Item": {**key("w", "2"), "g": S("g0"), "gn": N(5)}}},
        {"DeleteRequest": {"Key": key("p1", "a#000")}},
    ]})
    yield "batch write"
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": "str", "Item": {**key("w", "3"), "g": S("gnew"), "gn": N(1)}}},
        {"Update": {"TableName": "str", "Key": key("w", "2"), "UpdateExpression": "REMOVE g"}},
    ])
    yield "transaction"
    try:
        client.put_item(TableName="str", Item={**key("w", "3"), "g": S("g2"), "gn": N(1)},
                        ConditionExpression="attribute_not_exists(pk)")
    except client.exceptions.ConditionalCheckFailedException:
        pass
    yield "a failed conditional write changes nothing"


def test_index_queries_after_every_kind_of_write_answer_exactly_as_moto_does(client: Any, unpatched_after: None) -> None:
    assert moto_speedups.apply()
    _gsi_answers(client)  # the index partitions are grouped now: each write must make them stale
    for what in _writes(client):
        patched = _gsi_answers(client)
        moto_speedups.remove()
        plain = _gsi_answers(client)
        assert moto_speedups.apply()
        assert patched == plain, what
    assert any(p[0]["Count"] for p in plain[-len(LIMITS):])  # the new partition holds items by now


def _conditional_writes(client: Any) -> list[Any]:
    """The same condition expressions again and again, on items that make
    them hold or fail: each answer must come from the item at hand."""
    key = lambda sk: {"pk": S("c"), "sk": S(sk)}  # noqa: E731
    out: list[Any] = []
    for round_ in range(3):
        for sk in ("a", "b", "a"):
            for cond, values in (("attribute_not_exists(pk)", None), ("v < :v", {":v": N(2)}),
                                 ("v IN (:a, :b)", {":a": N(1), ":b": N(round_)})):
                args: dict[str, Any] = {"TableName": "str", "Item": {**key(sk), "v": N(round_)}, "ConditionExpression": cond}
                if values:
                    args["ExpressionAttributeValues"] = values
                try:
                    client.put_item(**args)
                    out.append("ok")
                except client.exceptions.ConditionalCheckFailedException:
                    out.append("failed")
    out.append(pages(client, {"TableName": "str", "KeyConditionExpression": "pk = :p", "FilterExpression": "v > :v",
                              "ExpressionAttributeValues": {":p": S("c"), ":v": N(0)}}, None))
    return out


def test_conditions_answer_per_item_as_moto_does(client: Any, unpatched_after: None) -> None:
    moto_speedups.remove()
    plain = _conditional_writes(client)
    for sk in ("a", "b"):
        client.delete_item(TableName="str", Key={"pk": S("c"), "sk": S(sk)})
    assert moto_speedups.apply()
    patched = _conditional_writes(client)
    assert plain == patched
    assert "ok" in plain and "failed" in plain


def _queue_views(sqs: Any, url: str) -> list[Any]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    counts = {k: v for k, v in attrs.items() if k.startswith("Approximate")}
    return [counts, sorted(m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                                VisibilityTimeout=0).get("Messages", []))]


def _queue_run(sqs: Any, name: str) -> list[Any]:
    """Visible, delayed and in-flight messages: the counts and what a
    receive returns, as moto answers them."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    out = [_queue_views(sqs, url)]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(6)])
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    out.append(_queue_views(sqs, url))
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=600)["Messages"]
    out.append(len(got))
    out.append(_queue_views(sqs, url))
    return out


def test_queue_counts_and_receives_are_moto_s(aws_env: None, unpatched_after: None) -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        moto_speedups.remove()
        plain = _queue_run(sqs, "plain")
        assert moto_speedups.apply()
        patched = _queue_run(sqs, "patched")
    assert plain == patched
    assert plain[3][0] == {"ApproximateNumberOfMessages": "4", "ApproximateNumberOfMessagesDelayed": "1",
                           "ApproximateNumberOfMessagesNotVisible": "2"}
