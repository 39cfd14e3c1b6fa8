"""Chalice's own error answers rewritten into the documented error body;
the local gateway's refusals answered as the deployed API answers them."""

from __future__ import annotations

import json

from chalice import Response

from chalicelib.api.common import documented_error
from chalicelib.api.gateway import GATEWAY_RESPONSES, local_gateway_answer, no_route


def test_chalices_405_keeps_its_allow_header_and_lists_the_methods():
    r = documented_error(Response(body={"Code": "MethodNotAllowedError", "Message": "Unsupported method: PATCH"},
                                  status_code=405, headers={"Allow": "GET, PUT"}))
    assert r.status_code == 405 and r.headers["Allow"] == "GET, PUT"
    assert r.body == {"error": {"code": "method_not_allowed", "message": "this path allows GET, PUT", "field": None}}


def test_chalices_500_says_nothing_more_than_internal_error():
    r = documented_error(Response(body={"Code": "InternalServerError", "Message": "An internal server error occurred."},
                                  status_code=500))
    assert r.body == {"error": {"code": "internal", "message": "internal error", "field": None}}


def test_other_answers_pass_unchanged():
    ours = Response(body={"error": {"code": "not_found", "message": "m", "field": "x"}}, status_code=404)
    ok = Response(body={"Code": "x", "Message": "a body that looks like one"}, status_code=200)
    assert documented_error(ours) is ours and documented_error(ok) is ok


def test_the_local_gateways_refusals_are_the_deployed_apis_answers():
    assert local_gateway_answer(403) == no_route() == (404, json.loads(GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"].template()))
    status, body = local_gateway_answer(401)
    assert status == 401 and body["error"]["code"] == "unauthorized"
