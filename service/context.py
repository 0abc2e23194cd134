"""What the API process holds for its lifetime, built once from the Settings object."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio
from celery import Celery
from redis.asyncio import Redis as AsyncRedis

from service.downloads import Downloads
from service.ratelimit import AuthFailureLimiter, RateLimiter
from workers.config import Settings
from workers.media.decode import DecodeLimits
from workers.net.guard import FetchPolicy
from workers.queue.ingest import Ingest
from workers.queue.publish import Publisher
from workers.store import Database, open_database
from workers.store.blobs import BlobStore
from workers.store.keys import KeyCache


@dataclass
class ApiContext:
    settings: Settings
    db: Database
    blobs: BlobStore
    celery: Celery
    publisher: Publisher
    redis: redis.Redis
    #: The same Redis for calls made on the event loop (the rate limit).
    aredis: AsyncRedis
    limiter: RateLimiter
    auth_failures: AuthFailureLimiter
    keys: KeyCache
    fetch_policy: FetchPolicy
    decode_limits: DecodeLimits
    ingest: Ingest
    #: `image_url` downloads: their own threads, a cap per key.
    downloads: Downloads

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiContext:
        from workers.queue.app import create_app

        db = open_database(settings)
        celery = create_app(settings)
        blobs = BlobStore(settings.resolved_media_dir, settings.storage_full_retry_after_s)
        publisher = Publisher(celery, db)
        fetch_policy = FetchPolicy.from_settings(settings)
        decode_limits = DecodeLimits.from_settings(settings)
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
        )
        aclient = redis.asyncio.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
        )
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            celery=celery,
            publisher=publisher,
            redis=client,
            aredis=aclient,
            limiter=RateLimiter(aclient, settings.redis_key_prefix, settings.rate_limit_per_minute),
            auth_failures=AuthFailureLimiter(aclient, settings.redis_key_prefix,
                                             settings.auth_failures_per_minute),
            keys=KeyCache(db, settings.api_key_cache_s, settings.api_key_cache_entries),
            fetch_policy=fetch_policy,
            decode_limits=decode_limits,
            ingest=Ingest(db, blobs, publisher, fetch_policy, decode_limits,
                          settings.webhook_secret),
            downloads=Downloads.from_settings(settings, fetch_policy),
        )  # fmt: skip

    async def aclose(self) -> None:
        self.downloads.close()
        await self.aredis.aclose()
        self.db.dispose()
        self.redis.close()
