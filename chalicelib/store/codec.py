"""Compact encodings shared by the DynamoDB adapter: covers, features, states."""

from __future__ import annotations

import json
import zlib

import numpy as np

from chalicelib.geo.cover import Cover


def cover_to_blob(cover: Cover) -> bytes:
    cells = np.asarray(cover.cells, dtype="<u8").tobytes()
    inside = np.packbits(np.asarray(cover.inside, dtype=bool)).tobytes()
    n = len(cover.cells).to_bytes(4, "big")
    return zlib.compress(n + cells + inside, 6)


def blob_to_cover(blob: bytes) -> Cover:
    raw = zlib.decompress(blob)
    n = int.from_bytes(raw[:4], "big")
    cells = np.frombuffer(raw[4 : 4 + 8 * n], dtype="<u8").astype(np.uint64)
    inside = np.unpackbits(np.frombuffer(raw[4 + 8 * n :], dtype=np.uint8))[:n].astype(bool)
    return Cover(cells, inside)


def json_to_blob(obj) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 6)


def blob_to_json(blob: bytes):
    return json.loads(zlib.decompress(blob))
