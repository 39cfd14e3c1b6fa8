"""Runtime configuration, read from the environment on first use.

Chalice sets a stage's environment variables *after* importing ``app.py`` in
tests, so nothing here runs at import time: :func:`get_settings` builds the
frozen :class:`Settings` lazily and caches it while the Lambda is warm.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Mapping

from chalicelib import __version__
from chalicelib.auth import key_hashes, parse_key_hashes


def _keys(value: str) -> tuple[str, ...]:
    """Comma-separated keys; two may be active at once during a rotation."""
    return tuple(k.strip() for k in value.split(",") if k.strip())


def _role_hashes(env: dict[str, str], role: str) -> tuple[str, ...]:
    """``HEXCAST_<ROLE>_KEY_HASHES`` (``sha256:<hex>``, comma-separated: the
    deployed form) plus ``HEXCAST_<ROLE>_KEY`` (plaintext, the local stack's),
    hashed here: a plaintext key is not kept."""
    name, plain = f"HEXCAST_{role}_KEY_HASHES", f"HEXCAST_{role}_KEY"
    return key_hashes(parse_key_hashes(env.get(name, ""), name), _keys(env.get(plain, "")), f"{name} + {plain}")


def _max_conversion_value(text: str) -> float:
    """``HEXCAST_MAX_CONVERSION_VALUE``: a finite number > 0 that DynamoDB can store."""
    value = float(text)
    if not math.isfinite(value) or not 0 < value < 1e300:
        raise ValueError(f"HEXCAST_MAX_CONVERSION_VALUE must be a finite number > 0, not {text!r}")
    return value


def fanout_queue_name(env: Mapping[str, str] | None = None) -> str:
    """The weather fan-out queue's name: ``HEXCAST_FANOUT_QUEUE``, else per
    stage. One function for both readers: :class:`Settings` (the sender) and
    the ``@on_sqs_message`` consumer, whose decorator needs the name when
    ``app.py`` is imported, before any settings exist."""
    env = os.environ if env is None else env
    return env.get("HEXCAST_FANOUT_QUEUE") or f"hexcast-{env.get('HEXCAST_STAGE', 'local')}-fanout"


def alert_queue_name(env: Mapping[str, str] | None = None) -> str:
    """The weather alert queue's name (accepted alerts waiting to be
    planned): ``HEXCAST_ALERT_QUEUE``, else per stage; read at import like
    :func:`fanout_queue_name`."""
    env = os.environ if env is None else env
    return env.get("HEXCAST_ALERT_QUEUE") or f"hexcast-{env.get('HEXCAST_STAGE', 'local')}-alerts"


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    version: str = __version__
    geofences_table: str = "hexcast-local-geofences"
    cells_table: str = "hexcast-local-cells"
    devices_table: str = "hexcast-local-devices"
    campaigns_table: str = "hexcast-local-campaigns"
    deliveries_table: str = "hexcast-local-deliveries"
    alerts_table: str = "hexcast-local-alerts"
    #: SQS queue (name) of the weather fan-out: chunks of devices to send to.
    fanout_queue: str = "hexcast-local-fanout"
    #: SQS queue (name) of accepted weather alerts, planned by their consumer.
    alert_queue: str = "hexcast-local-alerts"
    #: ``sha256:<hex>`` of the active API keys per role (at most two: rotation).
    admin_key_hashes: tuple[str, ...] = ()
    app_key_hashes: tuple[str, ...] = ()
    log_level: str = "INFO"
    #: Pings whose accuracy is worse than this update nothing.
    max_accuracy_m: float = 1000.0
    #: A device whose visits did not change is written at most this often
    #: (its last-seen time and stored location).
    last_seen_refresh_s: int = 1800
    #: Also write a device whose H3 cell at this resolution changed (0: only
    #: visits and the refresh write it; 9: every resolution-9 cell change).
    location_write_res: int = 0
    #: Index rows of this many cells kept in a warm Lambda (0: none), trusted
    #: while the index epoch is unchanged and for at most ``index_cache_s``.
    index_cache_cells: int = 200_000
    index_cache_s: float = 3600.0
    #: Last known locations expire after this many days (DynamoDB TTL).
    location_ttl_days: int = 30
    #: Geometry cache entries kept in a warm Lambda.
    geometry_cache_size: int = 4096
    #: SNS platform application ARNs per platform (per stage).
    sns_apns_arn: str = ""
    sns_apns_sandbox_arn: str = ""
    sns_fcm_arn: str = ""
    #: Secret for coupon codes (HMAC); per stage, never in the repo.
    coupon_secret: str = ""
    #: Opens and conversions are attributed within this window after a send.
    conversion_window_hours: float = 72.0
    #: The largest ``value`` a conversion event may carry (per stage: a
    #: currency's scale); above it, or negative, is a 400.
    max_conversion_value: float = 1_000_000.0
    #: A warm Lambda re-reads the campaign list at most this often.
    campaign_cache_s: float = 30.0
    #: The weather feed the scheduled poller reads, and how it introduces itself
    #: (api.weather.gov asks for a User-Agent with contact details).
    weather_feed_url: str = "https://api.weather.gov/alerts/active?status=actual"
    weather_user_agent: str = "hexcast/0.1 (ops@hexcast.invalid)"
    #: HTTP timeout (seconds) for the feed and for zone geometries.
    weather_http_timeout_s: float = 10.0
    #: The device region index spreads each coarse H3 cell over this many
    #: partitions, so a dense metro never makes one partition hot.
    region_shards: int = 4
    #: Devices per fan-out message.
    fanout_chunk: int = 100
    extra: dict = field(default_factory=dict)

    def platform_arn(self, platform: str) -> str:
        return {"ios": self.sns_apns_arn, "ios_sandbox": self.sns_apns_sandbox_arn, "android": self.sns_fcm_arn}.get(platform, "")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        stage = env.get("HEXCAST_STAGE", "local")
        prefix = f"hexcast-{stage}"
        return cls(
            stage=stage,
            geofences_table=env.get("HEXCAST_GEOFENCES_TABLE", f"{prefix}-geofences"),
            cells_table=env.get("HEXCAST_CELLS_TABLE", f"{prefix}-cells"),
            devices_table=env.get("HEXCAST_DEVICES_TABLE", f"{prefix}-devices"),
            campaigns_table=env.get("HEXCAST_CAMPAIGNS_TABLE", f"{prefix}-campaigns"),
            deliveries_table=env.get("HEXCAST_DELIVERIES_TABLE", f"{prefix}-deliveries"),
            alerts_table=env.get("HEXCAST_ALERTS_TABLE", f"{prefix}-alerts"),
            fanout_queue=fanout_queue_name(env),
            alert_queue=alert_queue_name(env),
            admin_key_hashes=_role_hashes(env, "ADMIN"),
            app_key_hashes=_role_hashes(env, "APP"),
            log_level=env.get("HEXCAST_LOG_LEVEL", "INFO"),
            max_accuracy_m=float(env.get("HEXCAST_MAX_ACCURACY_M", "1000")),
            last_seen_refresh_s=int(env.get("HEXCAST_LAST_SEEN_REFRESH_S", "1800")),
            location_write_res=int(env.get("HEXCAST_LOCATION_WRITE_RES", "0")),
            index_cache_cells=int(env.get("HEXCAST_INDEX_CACHE_CELLS", "200000")),
            index_cache_s=float(env.get("HEXCAST_INDEX_CACHE_S", "3600")),
            location_ttl_days=int(env.get("HEXCAST_LOCATION_TTL_DAYS", "30")),
            geometry_cache_size=int(env.get("HEXCAST_GEOMETRY_CACHE_SIZE", "4096")),
            sns_apns_arn=env.get("HEXCAST_SNS_APNS_ARN", ""),
            sns_apns_sandbox_arn=env.get("HEXCAST_SNS_APNS_SANDBOX_ARN", ""),
            sns_fcm_arn=env.get("HEXCAST_SNS_FCM_ARN", ""),
            coupon_secret=env.get("HEXCAST_COUPON_SECRET", ""),
            conversion_window_hours=float(env.get("HEXCAST_CONVERSION_WINDOW_HOURS", "72")),
            max_conversion_value=_max_conversion_value(env.get("HEXCAST_MAX_CONVERSION_VALUE", "1000000")),
            campaign_cache_s=float(env.get("HEXCAST_CAMPAIGN_CACHE_S", "30")),
            weather_feed_url=env.get("HEXCAST_WEATHER_FEED_URL", "https://api.weather.gov/alerts/active?status=actual"),
            weather_user_agent=env.get("HEXCAST_WEATHER_USER_AGENT", "hexcast/0.1 (ops@hexcast.invalid)"),
            weather_http_timeout_s=float(env.get("HEXCAST_WEATHER_HTTP_TIMEOUT_S", "10")),
            region_shards=int(env.get("HEXCAST_REGION_SHARDS", "4")),
            fanout_chunk=int(env.get("HEXCAST_FANOUT_CHUNK", "100")),
        )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
