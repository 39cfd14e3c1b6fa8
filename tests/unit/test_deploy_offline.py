"""The deployment checks skip only when the package index is unreachable;
a pin the index has no wheel for fails them."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import index_unreachable

_OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by \
'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new \
connection: [Errno -3] Temporary failure in name resolution')': /simple/boto3/
ERROR: Could not find a version that satisfies the requirement boto3==1.35.0 (from versions: none)
ERROR: No matching distribution found for boto3==1.35.0
"""

_BAD_PIN = """\
ERROR: Could not find a version that satisfies the requirement boto3==9.9.9 (from versions: 1.34.0, 1.35.0)
ERROR: No matching distribution found for boto3==9.9.9
"""


@pytest.mark.parametrize("output", [
    _OFFLINE,
    "ERROR: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: /simple/h3/ "
    "(Caused by ConnectTimeoutError(<...>, 'Connection to pypi.org timed out. (connect timeout=15)'))",
    "socket.gaierror: [Errno -2] Name or service not known",
    "Failed to establish a new connection: [Errno 111] Connection refused",
    "Failed to establish a new connection: [Errno 101] Network is unreachable",
    "ProxyError('Cannot connect to proxy.', OSError('Tunnel connection failed: 403 Forbidden'))",
], ids=["dns", "connect-timeout", "gaierror", "refused", "unreachable", "proxy"])
def test_connection_failures_mean_the_index_is_unreachable(output: str) -> None:
    assert index_unreachable(output, probe=_never_called)


def _never_called() -> bool:
    raise AssertionError("the output decides: no probe")


def _reachable() -> bool:
    return True


def _unreachable() -> bool:
    return False


@pytest.mark.parametrize("output", [
    _BAD_PIN,
    "ERROR: No matching distribution found for shapely==2.0.6",
    "Could not install dependencies: pip found no cp313 manylinux x86_64 wheels for h3",
    "",
], ids=["bad-pin", "no-match", "no-wheel", "empty"])
def test_no_matching_distribution_alone_is_a_failure_not_offline(output: str) -> None:
    assert not index_unreachable(output, probe=_reachable)


@pytest.mark.parametrize("output", [_BAD_PIN, "ERROR: No matching distribution found for shapely==2.0.6"])
def test_no_match_without_connection_errors_asks_the_index_itself(output: str) -> None:
    """pip with retries off prints no connection error offline, only "no
    matching distribution": then a direct connection attempt decides."""
    assert index_unreachable(output, probe=_unreachable)
    assert not index_unreachable(output, probe=_reachable)


def test_other_failures_never_count_as_offline() -> None:
    assert not index_unreachable("cfn-lint: E3012 Property Resources/Fn/Properties/Timeout should be of type Integer",
                                 probe=_unreachable)
