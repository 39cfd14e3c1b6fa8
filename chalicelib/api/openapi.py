"""The API's OpenAPI 3.1 document (``chalicelib/data/openapi.json``, built by
``python -m tools.openapi_doc`` from the code and checked against it by the
tests), served without a key so client generators can fetch it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from chalice import Blueprint

from chalicelib.api.common import Call, route

bp = Blueprint(__name__)

DOC_PATH = Path(__file__).resolve().parent.parent / "data" / "openapi.json"


@functools.cache
def document() -> dict[str, Any]:
    """The document, read once per process (it ships with the code)."""
    with DOC_PATH.open(encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


@route(bp, "/v1/openapi.json", roles=None)
def openapi(call: Call) -> Any:
    return document()
