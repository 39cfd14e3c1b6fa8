"""LocalStack starts moto, the app over HTTP and the pump, and undoes it all on stop."""

from __future__ import annotations

import os
import socket
import time

import boto3
import pytest
import requests
from chalice import Chalice

from tools.localstack import LocalStack


def _port_closed(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


def test_stack_serves_its_app_runs_its_pump_and_restores_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("HEXCAST_ADMIN_KEY", "from-the-shell")
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
        assert os.environ["HEXCAST_ADMIN_KEY"] == "k-admin"
        assert requests.get(f"{stack.base_url}/ping", timeout=10).json() == {"pong": True}

        sqs = boto3.client("sqs")  # reaches the emulator through AWS_ENDPOINT_URL
        sqs.send_message(QueueUrl=stack.pump.queue_url("lifecycle-q"), MessageBody="hi")
        assert stack.pump.wait_until_drained(timeout=10)
        assert handled == ["hi"]
        moto_port, http_port = int(stack.aws_endpoint.rsplit(":", 1)[1]), stack.port

    assert "AWS_ENDPOINT_URL" not in os.environ
    assert os.environ["HEXCAST_ADMIN_KEY"] == "from-the-shell"
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
