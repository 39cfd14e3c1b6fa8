"""The HTTP API through the local stack: moto's server, the app over real HTTP.

One stack serves every end-to-end test. It sets process-wide variables
(``AWS_ENDPOINT_URL``, fake credentials, keys) while it runs, so the
end-to-end tests run last: every other test sees the environment it started
with, and the stack restores it when the session ends.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tools.localstack import LocalStack, free_port

_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests under tests/e2e after all others (stable otherwise)."""
    inside = [str(item.path).startswith(_HERE + os.sep) for item in items]
    items[:] = [i for i, e in zip(items, inside) if not e] + [i for i, e in zip(items, inside) if e]


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """The running local stack (``base_url``, ``admin_key``, ``app_key``)."""
    with LocalStack(port=free_port()) as running:
        running.wait_healthy()
        yield running
