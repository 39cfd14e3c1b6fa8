"""The marketer CLI states the API's repair advice as its own flag."""

from __future__ import annotations

from tools.fences import cli_hint


def test_the_api_repair_hint_becomes_the_cli_flag() -> None:
    api = "invalid polygon: self-intersection near lng -76.01655, lat 37.95325; pass ?repair=true to repair it"
    assert cli_hint(api) == "invalid polygon: self-intersection near lng -76.01655, lat 37.95325; re-run with --repair to repair it"
    assert "?repair" not in cli_hint("see ?repair=true")


def test_other_messages_are_unchanged() -> None:
    assert cli_hint("id must match [A-Za-z0-9_.-]{1,64}") == "id must match [A-Za-z0-9_.-]{1,64}"
