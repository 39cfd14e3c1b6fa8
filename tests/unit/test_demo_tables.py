"""The demo's push table lists only what the SNS endpoint received."""

from __future__ import annotations

import io
import json
from typing import Any

from tools.demo import print_pushes


class Admin:
    def __init__(self, deliveries: list[dict[str, Any]]) -> None:
        self.deliveries = deliveries

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/v1/deliveries")
        return {"deliveries": self.deliveries}


class Stack:
    def __init__(self, messages: list[dict[str, str]]) -> None:
        self.messages = messages

    def sns_messages(self) -> list[dict[str, str]]:
        return self.messages


def _apns(title: str, body: str) -> str:
    return json.dumps({"APNS": json.dumps({"aps": {"alert": {"title": title, "body": body}}, "coupon_code": "RACE-1"})})


def test_suppressed_and_held_decisions_are_not_rows_of_the_received_table() -> None:
    trigger = {"type": "geofence_enter", "fence_id": "start"}
    deliveries = [  # newest first, as the API lists them
        {"campaign_id": "c3", "status": "held", "reason": "quiet_hours", "trigger": trigger},
        {"campaign_id": "c2", "status": "suppressed", "reason": "frequency_cap", "trigger": trigger},
        {"campaign_id": "c1", "status": "sent", "sns_message_id": "m1", "trigger": trigger},
    ]
    out = io.StringIO()

    count = print_pushes(Admin(deliveries), Stack([{"message_id": "m1", "message": _apns("Go!", "Good luck")}]), out)

    text = out.getvalue()
    table, _, rest = text.partition("not sent")
    assert count == 1
    assert "Go!" in table and "RACE-1" in table
    assert "frequency_cap" not in table and "quiet_hours" not in table and "c2" not in table
    assert "held: quiet_hours × 1" in rest and "suppressed: frequency_cap × 1" in rest
