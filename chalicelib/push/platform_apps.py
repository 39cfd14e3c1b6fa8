"""SNS platform applications for the emulator (moto) — tests and the local stack.

**Not for the cloud.** A real platform application holds Apple's signing key
or certificate and Firebase's service-account credentials; it is created once
per stage by an operator, and its ARN reaches the app through configuration
(``HEXCAST_SNS_APNS_ARN``, ``HEXCAST_SNS_APNS_SANDBOX_ARN``,
``HEXCAST_SNS_FCM_ARN`` in ``.chalice/config.json``), never from this module.
The credentials below are placeholders that real SNS rejects.
"""

from __future__ import annotations

from typing import Any

#: (name suffix, SNS platform, settings variable) per platform application.
PLATFORM_APPLICATIONS = (
    ("apns", "APNS", "HEXCAST_SNS_APNS_ARN"),
    ("apns-sandbox", "APNS_SANDBOX", "HEXCAST_SNS_APNS_SANDBOX_ARN"),
    ("fcm", "GCM", "HEXCAST_SNS_FCM_ARN"),
)

#: Placeholders the emulator accepts; not credentials of anything.
_EMULATOR_ONLY_ATTRIBUTES = {
    "APNS": {"PlatformPrincipal": "emulator-only-certificate", "PlatformCredential": "emulator-only-private-key"},
    "APNS_SANDBOX": {"PlatformPrincipal": "emulator-only-certificate", "PlatformCredential": "emulator-only-private-key"},
    "GCM": {"PlatformCredential": "emulator-only-fcm-key"},
}


def _existing_applications(sns_client: Any) -> set[str]:
    arns: set[str] = set()
    for page in sns_client.get_paginator("list_platform_applications").paginate():
        arns.update(app["PlatformApplicationArn"] for app in page.get("PlatformApplications", []))
    return arns


def ensure_platform_applications(sns_client: Any, stage: str) -> dict[str, str]:
    """Create (or reuse, by name) ``hexcast-<stage>-apns``, ``-apns-sandbox``
    and ``-fcm`` in the emulator ``sns_client`` talks to → the settings
    variables naming them: ``{"HEXCAST_SNS_APNS_ARN": arn, ...}``.
    """
    existing = _existing_applications(sns_client)
    env: dict[str, str] = {}
    for suffix, platform, variable in PLATFORM_APPLICATIONS:
        name = f"hexcast-{stage}-{suffix}"
        arn = next((a for a in existing if a.endswith(f":app/{platform}/{name}")), None)
        if arn is None:
            arn = sns_client.create_platform_application(
                Name=name, Platform=platform, Attributes=dict(_EMULATOR_ONLY_ATTRIBUTES[platform])
            )["PlatformApplicationArn"]
        env[variable] = arn
    return env
