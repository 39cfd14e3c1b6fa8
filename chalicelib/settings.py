"""Runtime configuration, read from the environment on first use.

Chalice sets a stage's environment variables *after* importing ``app.py`` in
tests, so nothing here runs at import time: :func:`get_settings` builds the
frozen :class:`Settings` lazily and caches it while the Lambda is warm.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from chalicelib import __version__


def _keys(value: str) -> tuple[str, ...]:
    """Comma-separated keys; two may be active at once during a rotation."""
    return tuple(k.strip() for k in value.split(",") if k.strip())


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    version: str = __version__
    geofences_table: str = "hexcast-local-geofences"
    cells_table: str = "hexcast-local-cells"
    devices_table: str = "hexcast-local-devices"
    admin_keys: tuple[str, ...] = ()
    app_keys: tuple[str, ...] = ()
    log_level: str = "INFO"
    #: Pings whose accuracy is worse than this update nothing.
    max_accuracy_m: float = 1000.0
    #: A device whose state did not change is written at most this often.
    last_seen_refresh_s: int = 300
    #: Last known locations expire after this many days (DynamoDB TTL).
    location_ttl_days: int = 30
    #: Geometry cache entries kept in a warm Lambda.
    geometry_cache_size: int = 4096
    extra: dict = field(default_factory=dict)

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
            admin_keys=_keys(env.get("HEXCAST_ADMIN_KEY", "")),
            app_keys=_keys(env.get("HEXCAST_APP_KEY", "")),
            log_level=env.get("HEXCAST_LOG_LEVEL", "INFO"),
            max_accuracy_m=float(env.get("HEXCAST_MAX_ACCURACY_M", "1000")),
            last_seen_refresh_s=int(env.get("HEXCAST_LAST_SEEN_REFRESH_S", "300")),
            location_ttl_days=int(env.get("HEXCAST_LOCATION_TTL_DAYS", "30")),
            geometry_cache_size=int(env.get("HEXCAST_GEOMETRY_CACHE_SIZE", "4096")),
        )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
