"""Transitional import path of the in-memory store (see
:mod:`chalicelib.store.legacy`); the twins are ``memory_*.py``."""

from chalicelib.store.legacy import InMemoryStore

__all__ = ["InMemoryStore"]
