"""LocalStack starts moto, the app over HTTP and the pump, and undoes it all on stop."""

from __future__ import annotations

import os
import socket
import time

import boto3
import pytest
import requests
from chalice import Chalice

from chalicelib.auth import hash_token
from tools.localstack import LocalStack


def _port_closed(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


def test_stack_serves_its_app_runs_its_pump_and_restores_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("HEXCAST_ADMIN_KEY", "from-the-shell")
    monkeypatch.delenv("HEXCAST_ADMIN_KEY_HASHES", raising=False)
    app = Chalice(app_name="throwaway")
    handled: list[str] = []

    @app.route("/ping")
    def ping():
        return {"pong": True}

    @app.on_sqs_message(queue="lifecycle-q")
    def consume(event):
        handled.extend(record.body for record in event)

    stack = LocalStack(app, port=0, admin_key="k-admin", create_tables=False)
    with stack:
        assert os.environ["AWS_ENDPOINT_URL"] == stack.aws_endpoint
        # the app sees the key's hash, never the plaintext (keys are stored hashed)
        assert os.environ["HEXCAST_ADMIN_KEY_HASHES"] == hash_token("k-admin")
        assert "HEXCAST_ADMIN_KEY" not in os.environ
        assert requests.get(f"{stack.base_url}/ping", timeout=10).json() == {"pong": True}

        sqs = boto3.client("sqs")  # reaches the emulator through AWS_ENDPOINT_URL
        sqs.send_message(QueueUrl=stack.pump.queue_url("lifecycle-q"), MessageBody="hi")
        assert stack.pump.wait_until_drained(timeout=10)
        assert handled == ["hi"]
        moto_port, http_port = int(stack.aws_endpoint.rsplit(":", 1)[1]), stack.port

    assert "AWS_ENDPOINT_URL" not in os.environ
    assert os.environ["HEXCAST_ADMIN_KEY"] == "from-the-shell"
    assert "HEXCAST_ADMIN_KEY_HASHES" not in os.environ
    assert not stack.is_running()
    assert _port_closed("127.0.0.1", http_port)
    deadline = time.monotonic() + 5
    while not _port_closed("127.0.0.1", moto_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _port_closed("127.0.0.1", moto_port)


def test_start_fails_cleanly_when_the_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = LocalStack(Chalice(app_name="throwaway"), port=taken.getsockname()[1], create_tables=False)

        with pytest.raises(OSError):
            stack.start()

    assert not stack.moto.is_running()
    assert "AWS_ENDPOINT_URL" not in os.environ or os.environ["AWS_ENDPOINT_URL"] != stack.aws_endpoint


def test_stack_provides_platform_applications_and_reports_what_endpoints_received(monkeypatch: pytest.MonkeyPatch):
    import json

    from chalicelib.push.model import PushMessage
    from chalicelib.push.sns import SnsGateway, application_arn_of
    from chalicelib.settings import get_settings

    monkeypatch.delenv("HEXCAST_SNS_APNS_ARN", raising=False)
    app = Chalice(app_name="throwaway")

    @app.route("/platforms")
    def platforms():
        s = get_settings()
        return {"ios": s.sns_apns_arn, "ios_sandbox": s.sns_apns_sandbox_arn, "android": s.sns_fcm_arn}

    with LocalStack(app, port=0) as stack:
        served = requests.get(f"{stack.base_url}/platforms", timeout=10).json()
        assert served["ios"].endswith(":app/APNS/hexcast-local-apns")
        assert served["ios_sandbox"].endswith(":app/APNS_SANDBOX/hexcast-local-apns-sandbox")
        assert served["android"].endswith(":app/GCM/hexcast-local-fcm")

        gw = SnsGateway(boto3.client("sns"), get_settings())  # the emulator, through AWS_ENDPOINT_URL
        kept = gw.ensure_endpoint("d1", "android", "tok-1", None)
        gone = gw.ensure_endpoint("d2", "ios", "tok-2", None)
        assert application_arn_of(kept.arn) == served["android"]
        first = gw.publish(kept.arn, "android", PushMessage("dl_1", "T1", "B1"))
        second = gw.publish(gone.arn, "ios", PushMessage("dl_2", "T2", "B2"))
        third = gw.publish(kept.arn, "android", PushMessage("dl_3", "T3", "B3"))
        gw.delete_endpoint(gone.arn)  # what was sent stays listed

        messages = stack.sns_messages()

    assert [(m["endpoint_arn"], m["message_id"]) for m in messages] == [
        (kept.arn, first),
        (kept.arn, third),
        (gone.arn, second),
    ]
    assert [json.loads(m["message"])["default"] for m in messages] == ["B1", "B3", "B2"]
    assert "GCM" in json.loads(messages[0]["message"]) and "APNS" in json.loads(messages[2]["message"])
    assert "HEXCAST_SNS_APNS_ARN" not in os.environ
    with pytest.raises(RuntimeError):
        stack.sns_messages()
