"""An in-memory :class:`~chalicelib.ports.PushGateway` for service tests
and benchmarks: the same contract as :class:`~chalicelib.push.sns.SnsGateway`
(endpoint lifecycle, errors, throttling retried inside), no AWS.

>>> from chalicelib.push.model import PushMessage
>>> gw = FakePushGateway()
>>> ep = gw.ensure_endpoint("d1", "ios", "tok", None)
>>> ep.created, gw.ensure_endpoint("d1", "ios", "tok", ep.arn).created
(True, False)
>>> msg_id = gw.publish(ep.arn, "ios", PushMessage("dl_1", "Hi", "there"))
>>> [(arn == ep.arn, m.title) for arn, _, m, _ in gw.published]
[(True, 'Hi')]
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from chalicelib.push.model import Endpoint, EndpointDisabled, PushError, PushMessage
from chalicelib.push.payloads import MESSAGE_KEYS, build_message, ttl_attributes

_ARN_PREFIX = "arn:aws:sns:us-east-1:123456789012"


@dataclass
class FakeEndpoint:
    """One endpoint as the fake's "SNS" holds it."""

    arn: str
    platform: str
    device_id: str
    token: str
    enabled: bool = True


class FakePushGateway:
    """In-memory, thread-safe push gateway.

    Observe: ``published`` — ``(endpoint_arn, platform, message, message_id)``
    per successful publish, in order; ``endpoints`` — live endpoints by ARN;
    counters ``creates`` (endpoints created), ``updates`` (token changed or
    re-enabled), ``deletes``, ``publishes`` (publish calls, failed ones
    included) and ``throttled`` (throttled attempts absorbed or not).

    Steer: :meth:`disable` (what SNS does when APNs/FCM report a dead token),
    :meth:`forget` (the endpoint is deleted behind our back), :meth:`fail_next`.

    :param platforms: the platforms with a "platform application"; others
        raise ``PushError("platform_not_configured")`` as the real gateway does.
    :param max_attempts: attempts per publish before throttling gives up
        (the real gateway's default).
    :param one_endpoint_per_token: as SNS does, creating an endpoint for a
        token that already has one (same platform) returns that endpoint.
    """

    def __init__(self, platforms: tuple[str, ...] = tuple(MESSAGE_KEYS), *, max_attempts: int = 5,
                 one_endpoint_per_token: bool = False) -> None:
        self.platforms = tuple(platforms)
        self.one_endpoint_per_token = one_endpoint_per_token
        self.max_attempts = max_attempts
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.published: list[tuple[str, str, PushMessage, str]] = []
        self.creates = self.updates = self.deletes = self.publishes = self.throttled = 0
        self._failures: deque[PushError] = deque()
        self._throttles = 0
        self._seq = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ steering
    def disable(self, endpoint_arn: str) -> None:
        """Disable the endpoint (publishes raise :class:`EndpointDisabled`
        until a registration re-enables it)."""
        with self._lock:
            self.endpoints[endpoint_arn].enabled = False

    def forget(self, endpoint_arn: str) -> None:
        """Delete the endpoint as if someone else had (the next registration recreates it)."""
        with self._lock:
            self.endpoints.pop(endpoint_arn, None)

    def fail_next(self, n: int, error: PushError | str) -> None:
        """Inject failures into the next publishes.

        ``error`` a :class:`PushError` (or :class:`EndpointDisabled`): each of
        the next ``n`` publish calls raises it. ``"throttle"``: the next ``n``
        publish *attempts* are throttled; retried inside as the real gateway
        does, so a call succeeds after them unless it runs out of its
        ``max_attempts`` (then ``PushError("throttled")``, and the rest carry
        over to the next call).
        """
        with self._lock:
            if error == "throttle":
                self._throttles += n
            elif isinstance(error, PushError):
                self._failures.extend([error] * n)
            else:
                raise ValueError(f"error must be a PushError or 'throttle', not {error!r}")

    # ------------------------------------------------------------ the port
    def ensure_endpoint(self, device_id: str, platform: str, token: str, endpoint_arn: str | None) -> Endpoint:
        with self._lock:
            if platform not in self.platforms:
                raise PushError("platform_not_configured", f"no platform application for {platform!r}")
            current = self.endpoints.get(endpoint_arn) if endpoint_arn else None
            if current is not None and current.platform != platform:
                del self.endpoints[current.arn]  # another platform application: replace
                self.deletes += 1
                current = None
            if current is None:
                return Endpoint(self._create(device_id, platform, token), enabled=True, created=True)
            if current.token != token or not current.enabled:
                current.token, current.enabled = token, True
                self.updates += 1
            return Endpoint(current.arn, enabled=True, created=False)

    def delete_endpoint(self, endpoint_arn: str) -> None:
        with self._lock:
            if self.endpoints.pop(endpoint_arn, None) is not None:
                self.deletes += 1

    def publish(self, endpoint_arn: str, platform: str, message: PushMessage) -> str:
        try:  # what SNS would be sent must be buildable, as in the real gateway
            build_message(platform, message)
            ttl_attributes(platform, message.ttl_seconds)
        except ValueError as exc:
            raise PushError("invalid_message", str(exc)) from exc
        with self._lock:
            self.publishes += 1
            if self._failures:
                raise self._failures.popleft()
            if self._throttles:
                absorbed = min(self._throttles, self.max_attempts)
                self._throttles -= absorbed
                self.throttled += absorbed
                if absorbed == self.max_attempts:
                    raise PushError("throttled", f"throttled {absorbed} times")
            endpoint = self.endpoints.get(endpoint_arn)
            if endpoint is None:
                raise PushError("endpoint_not_found", "Endpoint does not exist")
            if not endpoint.enabled:
                raise EndpointDisabled("Endpoint is disabled")
            self._seq += 1
            message_id = f"fake-msg-{self._seq:08d}"
            self.published.append((endpoint_arn, platform, message, message_id))
            return message_id

    # ------------------------------------------------------------ helpers
    def _create(self, device_id: str, platform: str, token: str) -> str:
        if self.one_endpoint_per_token:
            for ep in self.endpoints.values():
                if ep.platform == platform and ep.token == token:
                    ep.device_id, ep.enabled = device_id, True
                    return ep.arn
        self._seq += 1
        arn = f"{_ARN_PREFIX}:endpoint/{MESSAGE_KEYS[platform]}/hexcast-fake-{platform}/{self._seq:08d}"
        self.endpoints[arn] = FakeEndpoint(arn, platform, device_id, token)
        self.creates += 1
        return arn
