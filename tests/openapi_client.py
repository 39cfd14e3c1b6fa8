"""A client driven only through the OpenAPI document's operations: it knows
an operation id, never a method or a path. Every call is checked against the
document — the path and query parameters it declares (values against their
schemas), a key the operation's security accepts, the request body against
its schema — and every answer too: a status the operation lists, JSON with
the Content-Type it names, and a body that validates against its schema
(JSON Schema 2020-12, date-time formats checked).

A negative call (``invalid=True``) sends a body or parameter the document
forbids and requires that the document does forbid it: the server's 4xx and
the schema must agree."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from jsonschema import Draft202012Validator

from tests.conftest import ADMIN_KEY, APP_KEY

_METHODS = ("get", "put", "post", "delete")
_UNSET: Any = object()


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class DocClient:
    http: Any  # chalice.test.Client().http
    doc: dict[str, Any]
    keys: dict[str, str] = field(default_factory=lambda: {"admin": ADMIN_KEY, "app": APP_KEY})
    #: (operation id, status) of every call made.
    seen: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ops: dict[str, tuple[str, str, dict[str, Any]]] = {
            op["operationId"]: (method, path, op)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
            if method in _METHODS
        }

    # ------------------------------------------------------------ schemas
    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "components": self.doc["components"]}
        return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            _, section, name = obj["$ref"].removeprefix("#/").split("/")
            obj = self.doc["components"][section][name]
        return obj

    # ------------------------------------------------------------ a call
    def call(
        self,
        op_id: str,
        *,
        role: str | None = "admin",
        secret: str | None = None,
        body: Any = _UNSET,
        raw: bytes | None = None,
        content_type: str = "application/json",
        invalid: bool = False,
        expect: int | None = None,
        **params: Any,
    ) -> Answer:
        method, path, op = self.ops[op_id]
        problems = self._check_params(op, params) + self._check_security(op, role, secret)
        if raw is None:  # raw bytes: beyond what a schema says (a body over the size limit)
            problems += self._check_body(op, body)
        if invalid:
            assert problems, f"{op_id}: the document accepts what this negative call sends"
        else:
            assert not problems, f"{op_id}: {problems}"
        url = path
        query = {}
        for p in op.get("parameters", []):
            if p["name"] in params and p["in"] == "path":
                url = url.replace("{" + p["name"] + "}", str(params[p["name"]]))
            elif p["name"] in params:
                v = params[p["name"]]
                query[p["name"]] = str(v).lower() if isinstance(v, bool) else str(v)
        if query:
            url += "?" + urlencode(query)
        headers = {"Content-Type": content_type}
        if role is not None:
            headers["X-Api-Key"] = self.keys[role]
        if secret is not None:
            headers["X-Device-Secret"] = secret
        data = raw if raw is not None else (None if body is _UNSET else json.dumps(body))
        resp = getattr(self.http, method)(url, headers=headers, body=data)
        answer = self._check_answer(op_id, op, resp)
        if expect is not None:
            assert answer.status == expect, (op_id, answer.status, answer.body)
        self.seen.append((op_id, answer.status))
        return answer

    def _check_params(self, op: dict[str, Any], params: dict[str, Any]) -> list[str]:
        declared = {p["name"]: p for p in op.get("parameters", [])}
        problems = [f"undeclared parameter {k}" for k in params if k not in declared]
        for name, p in declared.items():
            if name not in params:
                if p.get("required"):
                    problems.append(f"missing {name}")
                continue
            for err in self.validator(p["schema"]).iter_errors(params[name]):
                problems.append(f"{name}: {err.message}")
        return problems

    def _check_body(self, op: dict[str, Any], body: Any) -> list[str]:
        spec = op.get("requestBody")
        if body is _UNSET:
            return ["a body is required"] if spec and spec.get("required") else []
        if spec is None:
            return ["this operation takes no body"]
        schema = spec["content"]["application/json"]["schema"]
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in self.validator(schema).iter_errors(body)]

    def _check_security(self, op: dict[str, Any], role: str | None, secret: str | None) -> list[str]:
        """Whether some security requirement of the operation is met (a wrong
        secret's value is not the document's business)."""
        if not op["security"]:
            return []
        if role is None:
            return ["no X-Api-Key"]
        ok = [req for req in op["security"] if role in req.get("ApiKey", [])]
        if not ok:
            return [f"the {role} key is not accepted"]
        if secret is None and all("DeviceSecret" in req for req in ok):
            return [f"the {role} key needs X-Device-Secret"]
        return []

    def _check_answer(self, op_id: str, op: dict[str, Any], resp: Any) -> Answer:
        status = resp.status_code
        headers = {k.lower(): v for k, v in (resp.headers or {}).items()}
        assert str(status) in op["responses"], f"{op_id} answered {status}, not in the document: {resp.body[:300]!r}"
        spec = self._resolve(op["responses"][str(status)])
        if "content" not in spec:
            assert not resp.body, f"{op_id} {status}: the document says no body"
            return Answer(status, None, headers)
        (media, content), = spec["content"].items()
        assert headers.get("content-type", "").split(";")[0] == media, (op_id, status, headers.get("content-type"))
        body = json.loads(resp.body)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in self.validator(content["schema"]).iter_errors(body)]
        assert not errors, f"{op_id} {status} answer does not match the document: {errors[:5]}"
        return Answer(status, body, headers)
