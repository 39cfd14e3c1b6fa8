"""The local stack behaves as AWS does under concurrency: conditional writes
through the emulator's moto server are atomic (exactly one of N racing
creations wins, none answers 500), and the app's HTTP server takes a burst
of 100 clients connecting at once without resetting a connection."""

from __future__ import annotations

import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.ports import Device
from chalicelib.store.devices import _profile_update
from tools.emulator import FAKE_AWS_ENV, MotoServer
from tools.localstack import BurstHTTPServer, LocalStack

THREADS = 24
ROUNDS = 12


@pytest.fixture(scope="module")
def emulator():
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


def _client(endpoint: str):
    return boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name=FAKE_AWS_ENV["AWS_REGION"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=THREADS * 2),
    )


def _race(emulator, table: str, write) -> list[tuple[int, str]]:
    """``THREADS`` threads released together, each calling ``write(client, key, i)``
    once per round on that round's key → per round: (winners, errors)."""
    client = _client(emulator.endpoint)
    outcomes = []
    for r in range(ROUNDS):
        key = f"k{r}"
        gate = threading.Barrier(THREADS)
        results: list[str] = []

        def one(i: int) -> None:
            gate.wait()
            try:
                write(client, table, key, i)
                results.append("won")
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                results.append("lost" if code in ("ConditionalCheckFailedException", "TransactionCanceledException")
                               else f"error {code} {exc.response['ResponseMetadata'].get('HTTPStatusCode')}")

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(one, range(THREADS)))
        errors = [x for x in results if x.startswith("error")]
        outcomes.append((results.count("won"), ";".join(errors)))
    return outcomes


def _table(emulator, name: str) -> str:
    _client(emulator.endpoint).create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
    )
    return name


def test_racing_conditional_updates_have_exactly_one_winner(emulator):
    """A device's first registration, N times at once: the write the app
    sends (without serialisation moto let 2-3 of 24 win in most rounds)."""
    def create(client, table, key, i):
        device = Device(key, "android", "tok" * 50, attributes={f"a{j}": "x" * 100 for j in range(30)},
                        consent={"push": True, "location": True}, secret_hash=f"h{i}", updated_at="now")
        client.update_item(TableName=table, Key={"device_id": {"S": key}}, ReturnValues="ALL_OLD",
                           **_profile_update(device, True))

    assert _race(emulator, _table(emulator, "race-update"), create) == [(1, "")] * ROUNDS


def test_racing_conditional_puts_and_transactions_have_exactly_one_winner(emulator):
    def put(client, table, key, i):
        item = {"device_id": {"S": key}, "by": {"N": str(i)}}
        if i % 2:
            client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(device_id)")
        else:
            client.transact_write_items(TransactItems=[{"Put": {
                "TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(device_id)"}}])

    assert _race(emulator, _table(emulator, "race-put"), put) == [(1, "")] * ROUNDS


def test_the_app_server_takes_a_burst_of_100_clients(monkeypatch):
    with LocalStack(port=0, create_tables=False, schedule_interval=None) as stack:
        url = stack.base_url + "/v1/health"
        gate = threading.Barrier(100)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def one(_: int) -> int | str:
            gate.wait()
            try:
                with opener.open(url, timeout=60) as resp:
                    return resp.status
            except OSError as exc:
                return type(exc).__name__ + str(exc)

        with ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(one, range(100)))
        backlog = _listen_backlog(stack.port)
    assert answers == [200] * 100, [a for a in answers if a != 200][:5]
    if backlog is not None:  # what the kernel holds for the listening socket
        assert backlog >= 100


def _listen_backlog(port: int) -> int | None:
    """The listen backlog of the socket on ``port`` (``ss``'s Send-Q of a
    listening socket), or None without ``ss``."""
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    fields = out.split()
    return int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
