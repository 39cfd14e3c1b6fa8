"""Delivery record lifecycle rules that are not about storage."""

from __future__ import annotations

from chalicelib.push.model import Delivery


def open_since(d: Delivery) -> float:
    """Since when an open (``pending``/``publishing``) record has had no
    owner's attention: its ``updated_at`` (``created_at`` when unset). The
    sweep takes over records open since longer than its threshold."""
    return d.updated_at if d.updated_at is not None else d.created_at
