"""The AWS SDK clients every adapter is built over: DynamoDB for the stores,
SNS for the push gateway, SQS for the queues — one botocore session and one
client configuration for all of them, made here so that the composition
root only chooses and wires.

botocore's session, not boto3's: the same clients, without boto3's import
of s3transfer (and multiprocessing) on every cold start. SNS and SQS clients
are made on first use (:class:`LazyClient`): a function that never
publishes (a ping without a push, the location sweep) never loads their
service models (~30 ms of a cold start for SNS).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.session import get_session

#: One for all lazy clients: a botocore session is not safe to make clients from at once.
_CLIENT_MAKING = threading.Lock()


class LazyClient:
    """An SDK client made on its first use."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with _CLIENT_MAKING:
                if self._client is None:
                    self._client = self._make()
        return getattr(self._client, name)


class AwsClients:
    """botocore retries a few times in standard mode; the adapters' own
    retries (budgeted) sit on top, so the two do not multiply into minutes."""

    def __init__(self) -> None:
        self._config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)
        self._session = get_session()

    def dynamodb(self) -> Any:
        return self._session.create_client("dynamodb", config=self._config)

    def sns(self) -> Any:
        return LazyClient(lambda: self._session.create_client("sns", config=self._config))

    def sqs(self) -> Any:
        return LazyClient(lambda: self._session.create_client("sqs", config=self._config))
