"""The composition root: the only place boto3 objects are built, lazily, and
cached while the Lambda is warm. Tests install their own with :func:`set_deps`."""

from __future__ import annotations

import threading

from chalicelib.settings import get_settings

_lock = threading.Lock()
_deps = None


def get_deps():
    """The process's :class:`~chalicelib.services.Deps`, built on first use."""
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = build_deps()
    return _deps


def set_deps(deps) -> None:
    """Install ``deps`` (tests, the local stack); ``None`` rebuilds on next use."""
    global _deps
    _deps = deps


def build_deps():
    import boto3
    from botocore.config import Config

    from chalicelib.cache import VersionCache
    from chalicelib.logs import ContextThreadPool
    from chalicelib.services.delivery import CampaignCache
    from chalicelib.push.sns import SnsGateway
    from chalicelib.services import Deps
    from chalicelib.weather.area import AreaResolver, CountyIndex, ZoneFetcher
    from chalicelib.weather.fanout import SqsQueue
    from chalicelib.store.dynamo import DynamoStore

    settings = get_settings()
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=32)
    client = boto3.client("dynamodb", config=config)
    store = DynamoStore(client, settings)
    # Its tasks run in the submitter's context: their log lines keep the request id.
    pool = ContextThreadPool(max_workers=16, thread_name_prefix="hexcast-io")
    # SNS throttling is retried by the gateway itself (with backoff), so the
    # client's own retries stay at the standard few.
    sns = boto3.client("sns", config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32))
    return Deps(
        store=store,
        settings=settings,
        cache=VersionCache(settings.geometry_cache_size),
        pool=pool,
        push=SnsGateway(sns, settings),
        campaigns=CampaignCache(settings.campaign_cache_s),
        resolver=AreaResolver(CountyIndex.load(), ZoneFetcher(settings.weather_user_agent, settings.weather_http_timeout_s)),
        queue=SqsQueue(boto3.client("sqs", config=config)),
    )
