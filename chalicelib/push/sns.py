"""The Amazon SNS mobile-push adapter of :class:`~chalicelib.push.model.PushGateway`.

Endpoints follow AWS's documented lifecycle ("Best practices for managing
Amazon SNS mobile application push endpoints"): create once, store the ARN;
on every later registration read the endpoint's attributes, update a changed
token and re-enable a disabled endpoint; recreate an endpoint that is gone.
``CreatePlatformEndpoint`` is never called for an ARN that still exists.

Errors become :class:`PushError` with a short ``reason`` (it goes into the
delivery record); throttling is retried here with exponential backoff and
jitter, because SNS's ``Throttled`` code is not one botocore retries.

Push tokens and endpoint ARNs identify a person's device: they are logged at
DEBUG only.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.push import payloads
from chalicelib.retry import RetryPolicy
from chalicelib.push.model import Endpoint, EndpointDisabled, PushError, PushMessage

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

    from chalicelib.settings import Settings

log = logging.getLogger("hexcast.push")

#: Error codes that mean "slow down" (SNS answers ``Throttled``; KMS-encrypted
#: topics ``KMSThrottling``; the rest are the generic AWS spellings).
THROTTLE_CODES = frozenset(
    {"Throttled", "ThrottledException", "Throttling", "ThrottlingException", "KMSThrottling", "RequestThrottled"}
)

#: AWS's pseudo-code parses the existing endpoint's ARN out of this message.
_EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:[^ ]+) already exists with the same [Tt]oken")
#: Publish to an endpoint that is gone: ``NotFound`` or an ``InvalidParameter``
#: naming the target ("No endpoint found for the target arn specified").
_ENDPOINT_GONE = re.compile(r"endpoint|targetarn|target arn", re.IGNORECASE)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(code: str) -> str:
    """``PlatformApplicationDisabled`` → ``platform_application_disabled``.

    >>> snake_case("KMSAccessDenied"), snake_case("InternalError")
    ('kms_access_denied', 'internal_error')
    """
    return _CAMEL_BOUNDARY.sub("_", code).replace("-", "_").lower()


def application_arn_of(endpoint_arn: str) -> str | None:
    """The platform application an endpoint ARN belongs to, or ``None`` when
    it is not an endpoint ARN.

    >>> application_arn_of("arn:aws:sns:us-east-1:123456789012:endpoint/APNS/app/5e3e9847")
    'arn:aws:sns:us-east-1:123456789012:app/APNS/app'
    """
    head, sep, resource = endpoint_arn.rpartition(":")
    parts = resource.split("/")
    if not sep or not head.startswith("arn:") or len(parts) != 4 or parts[0] != "endpoint":
        return None
    return f"{head}:app/{parts[1]}/{parts[2]}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "") or "Unknown")


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "") or "")


class SnsGateway:
    """:class:`PushGateway` over a boto3 SNS client.

    :param client: ``boto3.client("sns")`` (its own retries may be on or off:
        throttling is retried here either way).
    :param settings: gives the platform application ARN per platform.
    :param sleep: called between throttled attempts (tests pass a recorder).
    :param retry: how throttled calls are retried (:class:`~chalicelib.retry.RetryPolicy`:
        full jitter inside a time budget); by default at most 5 attempts,
        waits of up to 0.05 s doubling to 2 s, within 5 s.
    """

    def __init__(
        self,
        client: "SNSClient",
        settings: "Settings",
        sleep: Callable[[float], None] = time.sleep,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.retry = retry or RetryPolicy(budget_s=5.0, base_s=0.05, cap_s=2.0, clock=time.monotonic, sleep=sleep,
                                          max_attempts=5)

    # ------------------------------------------------------------ endpoints
    def ensure_endpoint(self, device_id: str, platform: str, token: str, endpoint_arn: str | None) -> Endpoint:
        """Create, repair or reuse the device's endpoint (see the module doc).

        A stored endpoint of another platform application (the device moved
        from ``ios_sandbox`` to ``ios``, say) is deleted and a new one created.
        """
        app_arn = self.settings.platform_arn(platform)
        if not app_arn:
            raise PushError("platform_not_configured", f"no SNS platform application for {platform!r}")
        if endpoint_arn and application_arn_of(endpoint_arn) != app_arn:
            log.info("push endpoint moves to another platform application (%s)", platform)
            log.debug("replacing endpoint %s: not of application %s", endpoint_arn, app_arn)
            if application_arn_of(endpoint_arn) is not None:  # not an endpoint ARN at all: nothing to delete
                self.delete_endpoint(endpoint_arn)
            endpoint_arn = None
        if endpoint_arn is None:
            return Endpoint(self._create(device_id, app_arn, token), enabled=True, created=True)

        try:
            attributes = self._call("get_endpoint_attributes", EndpointArn=endpoint_arn)["Attributes"]
        except ClientError as exc:
            if _code(exc) != "NotFound":
                raise self._push_error("get_endpoint_attributes", exc) from exc
            log.info("push endpoint was gone; recreating it (%s)", platform)
            return Endpoint(self._create(device_id, app_arn, token), enabled=True, created=True)

        token_changed = attributes.get("Token") != token
        enabled = str(attributes.get("Enabled", "")).lower() == "true"
        if token_changed or not enabled:
            log.info("push endpoint repaired (%s): token_changed=%s was_enabled=%s", platform, token_changed, enabled)
            self._enable(endpoint_arn, token)
        return Endpoint(endpoint_arn, enabled=True, created=False)

    def _create(self, device_id: str, app_arn: str, token: str) -> str:
        try:
            arn = self._call(
                "create_platform_endpoint",
                PlatformApplicationArn=app_arn,
                Token=token,
                CustomUserData=device_id,
                # Explicit: SNS returns an existing endpoint for this token only
                # when it is enabled too; a disabled one answers "different
                # attributes" below, and is re-enabled.
                Attributes={"Enabled": "true"},
            )["EndpointArn"]
        except ClientError as exc:
            found = _EXISTING_ENDPOINT.search(_message(exc)) if _code(exc) == "InvalidParameter" else None
            if found is None:
                raise self._push_error("create_platform_endpoint", exc) from exc
            arn = found.group(1)
            log.info("push token already had an endpoint; reusing and enabling it")
            log.debug("reusing endpoint %s for device %s", arn, device_id)
            self._enable(arn, token, CustomUserData=device_id)
            return arn
        log.info("push endpoint created")
        log.debug("created endpoint %s for device %s", arn, device_id)  # never the token, even at DEBUG
        return arn

    def _enable(self, endpoint_arn: str, token: str, **extra: str) -> None:
        attributes = {"Token": token, "Enabled": "true", **extra}
        try:
            self._call("set_endpoint_attributes", EndpointArn=endpoint_arn, Attributes=attributes)
        except ClientError as exc:
            raise self._push_error("set_endpoint_attributes", exc) from exc

    def delete_endpoint(self, endpoint_arn: str) -> None:
        """``DeleteEndpoint``; an endpoint already gone is fine."""
        try:
            self._call("delete_endpoint", EndpointArn=endpoint_arn)
        except ClientError as exc:
            if _code(exc) != "NotFound":
                raise self._push_error("delete_endpoint", exc) from exc
        log.debug("deleted endpoint %s", endpoint_arn)

    # -------------------------------------------------------------- publish
    def publish(self, endpoint_arn: str, platform: str, message: PushMessage) -> str:
        """``Publish`` the message to the endpoint → the SNS ``MessageId``.

        Raises :class:`EndpointDisabled`, or :class:`PushError` with reason
        ``throttled`` (after retries), ``endpoint_not_found``,
        ``platform_disabled``, ``sns_unavailable``, ``invalid_message`` or the
        snake_case SNS error code.
        """
        try:
            body = payloads.build_message(platform, message)
            attributes = payloads.ttl_attributes(platform, message.ttl_seconds)
        except ValueError as exc:
            raise PushError("invalid_message", str(exc)) from exc
        params: dict[str, Any] = {"TargetArn": endpoint_arn, "MessageStructure": "json", "Message": body}
        if attributes:
            params["MessageAttributes"] = attributes
        try:
            message_id = self._call("publish", **params)["MessageId"]
        except ClientError as exc:
            raise self._push_error("publish", exc) from exc
        log.debug("published %s to %s: %s", message.delivery_id, endpoint_arn, message_id)
        return message_id

    # -------------------------------------------------------------- helpers
    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One SNS call, retried while throttled. ``ClientError`` other than
        throttling propagates; connection problems become ``sns_unavailable``."""
        method = getattr(self.client, operation)
        throttled: ClientError | None = None
        tries = 0
        for tries, _ in enumerate(self.retry.attempts(), start=1):
            try:
                return method(**params)
            except ClientError as exc:
                if _code(exc) not in THROTTLE_CODES:
                    raise
                throttled = exc
            except BotoCoreError as exc:
                log.warning("SNS %s unreachable: %s", operation, type(exc).__name__)
                raise PushError("sns_unavailable", f"SNS {operation}: {exc}") from exc
        log.warning("SNS %s still throttled after %d attempts", operation, tries)
        raise PushError("throttled", f"SNS {operation} throttled {tries} times") from throttled

    @staticmethod
    def _push_error(operation: str, exc: ClientError) -> PushError:
        code, text = _code(exc), _message(exc)
        if code == "EndpointDisabled":
            return EndpointDisabled(text or "the endpoint is disabled")
        if code == "PlatformApplicationDisabled":
            reason = "platform_disabled"
        elif code == "NotFound":
            reason = "platform_not_found" if operation == "create_platform_endpoint" else "endpoint_not_found"
        elif code == "InvalidParameter" and operation == "publish" and _ENDPOINT_GONE.search(text):
            reason = "endpoint_not_found"
        else:
            reason = snake_case(code)
        log.info("SNS %s failed: %s", operation, code)
        return PushError(reason, f"SNS {operation}: {code}: {text}")
