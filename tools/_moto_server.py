"""``python tools/_moto_server.py -H HOST -p PORT``: moto's server, tied to its parent.

Started by :class:`tools.emulator.MotoServer`. The parent holds this
process's stdin open and never writes to it: end of file means the parent is
gone — however it died, even by ``SIGKILL`` — and the server leaves at once
instead of lingering on its port.

One read-only route is added to moto's own ``/moto-api/`` (see
:func:`_install_routes`): ``GET /moto-api/hexcast/sns-messages`` lists what
SNS platform endpoints "received", which otherwise lives only in this
process's memory.

DynamoDB calls are serialised (:func:`serialise_dynamodb`): moto evaluates a
condition and then writes, with nothing in between held, so two concurrent
conditional writes could both succeed (or fail with a ``KeyError`` 500);
DynamoDB applies each write atomically.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any

#: Path of the route :func:`_install_routes` adds (``tools.localstack`` reads it).
SNS_MESSAGES_PATH = "/moto-api/hexcast/sns-messages"


def _exit_with_parent() -> None:
    try:
        while os.read(0, 4096):  # unbuffered: no lock held at interpreter exit
            pass
    finally:
        os._exit(0)


def sns_messages(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    """Every message published to an SNS platform endpoint, endpoints in
    creation order, each endpoint's messages in publish order — endpoints
    deleted since included (what was sent stays sent). Read-only."""
    from moto.sns.models import PlatformEndpoint

    out = []
    for endpoint in list(PlatformEndpoint.instances_tracked):  # type: ignore[attr-defined]
        for message_id, message in list(endpoint.messages.items()):
            out.append({"endpoint_arn": endpoint.arn, "message_id": message_id, "message": message})
    return 200, {"Content-Type": "application/json"}, json.dumps({"messages": out})


_DYNAMODB_LOCK = threading.RLock()


def serialise_dynamodb() -> None:
    """Run every DynamoDB request of this server one at a time, as DynamoDB
    applies each item write atomically: a conditional ``PutItem``/
    ``UpdateItem``/``DeleteItem`` or a transaction sees no write half done,
    and reads never see an item mid-change. Reads are serialised too (moto's
    tables are plain dicts). Idempotent."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "_hexcast_serialised", False):
        return

    def call_action(self: Any) -> Any:
        with _DYNAMODB_LOCK:
            return original(self)

    call_action._hexcast_serialised = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _install_routes() -> None:
    """Add our routes to moto's ``/moto-api`` URL table; it is read when the
    server builds that app (on the first ``/moto-api`` request), so this must
    run before :func:`moto.server.main`."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + SNS_MESSAGES_PATH + "$"] = sns_messages


def main() -> None:
    """Watch stdin, then run ``moto.server.main`` with this process's arguments."""
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    from moto.server import main as moto_main

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tools.moto_speedups import apply

    apply()
    serialise_dynamodb()
    _install_routes()

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
