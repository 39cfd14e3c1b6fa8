"""Transitional import path of the DynamoDB store (see
:mod:`chalicelib.store.legacy`); the repositories are ``fences.py``,
``devices.py``, ``campaigns.py``, ``deliveries.py`` and ``weather.py``."""

from chalicelib.store.legacy import DynamoStore

__all__ = ["DynamoStore"]
