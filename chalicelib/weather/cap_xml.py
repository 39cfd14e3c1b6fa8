"""Hardened XML for CAP documents: bytes in, an ElementTree element out.

CAP arrives from the network, so the parser refuses what XML attacks need:
any DTD (``<!DOCTYPE``: the billion-laughs and quadratic-blowup entity
bombs, external entities reading local files or URLs), entity declarations
and external references (``defusedxml`` with every ``forbid_*`` on), more
than :data:`MAX_BYTES` of input and nesting deeper than :data:`MAX_DEPTH`.
Every refusal is an :class:`~chalicelib.errors.InvalidInput` naming ``body``.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

from chalicelib.errors import InvalidInput

#: The API's body limit: a CAP document is never larger.
MAX_BYTES = 5 * 1024 * 1024
#: CAP nests five levels (alert/info/area/geocode/value); signatures a few
#: more. Anything deeper is not CAP.
MAX_DEPTH = 32

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"


class _DepthLimitedBuilder(TreeBuilder):
    """A TreeBuilder that refuses documents nested deeper than ``max_depth``."""

    def __init__(self, max_depth: int) -> None:
        super().__init__()
        self._depth = 0
        self._max_depth = max_depth

    def start(self, tag: Any, attrs: Any) -> Element:
        self._depth += 1
        if self._depth > self._max_depth:
            raise _TooDeep()
        return super().start(tag, attrs)

    def end(self, tag: Any) -> Element:
        self._depth -= 1
        return super().end(tag)


class _TooDeep(Exception):
    pass


def parse_xml(body: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Element:
    """Parse ``body`` (bytes, or text that is encoded as UTF-8) → the root
    element. Raises :class:`InvalidInput` (field ``body``) for anything that
    is not a well-formed, DTD-free document within the limits."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, (bytes, bytearray)):
        raise InvalidInput("body must be an XML document", "body")
    if len(body) > max_bytes:
        raise InvalidInput(f"the XML document is larger than {max_bytes} bytes", "body")
    if not body.strip():
        raise InvalidInput("body is empty; expected a CAP 1.2 <alert> document", "body")
    parser = DefusedXMLParser(target=_DepthLimitedBuilder(max_depth), forbid_dtd=True,
                              forbid_entities=True, forbid_external=True)
    try:
        parser.feed(bytes(body))
        root = parser.close()
    except defusedxml.DTDForbidden:
        raise InvalidInput("XML with a DTD (<!DOCTYPE ...>) is refused: CAP needs none, and DTDs "
                           "carry entity-expansion and external-entity attacks", "body") from None
    except defusedxml.EntitiesForbidden:
        raise InvalidInput("XML entity declarations are refused", "body") from None
    except defusedxml.ExternalReferenceForbidden:
        raise InvalidInput("XML external references are refused", "body") from None
    except _TooDeep:
        raise InvalidInput(f"the XML document is nested deeper than {max_depth} elements", "body") from None
    except ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        raise InvalidInput(f"malformed XML at line {line}, column {col}", "body") from None
    except (ValueError, UnicodeError, RecursionError):
        raise InvalidInput("malformed XML", "body") from None
    return root


def local(tag: Any) -> str:
    """``{namespace}name`` → ``name``."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def cap(name: str) -> str:
    """The qualified tag of a CAP 1.2 element."""
    return f"{{{CAP_NS}}}{name}"


def children(parent: Element, name: str) -> list[Element]:
    """The CAP-namespace children called ``name`` (never descendants: XML
    signatures inside ``<alert>`` carry look-alike elements)."""
    return parent.findall(cap(name))


def text(parent: Element, name: str) -> str | None:
    """The stripped text of the first CAP child ``name``; ``None`` when missing or blank."""
    el = parent.find(cap(name))
    if el is None or el.text is None:
        return None
    value = el.text.strip()
    return value or None


__all__ = ["CAP_NS", "MAX_BYTES", "MAX_DEPTH", "parse_xml", "local", "cap", "children", "text"]
