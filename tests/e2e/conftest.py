"""Queue fixtures: settings sharing a unique Redis prefix/queue and a database per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.infra import Worker, fresh_pg_database
from workers.config import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        with fresh_pg_database() as url:
            yield url


def queue_settings_for(base: Settings, database_url: str | None) -> Settings:
    from tests.support.infra import new_prefix

    prefix = new_prefix()
    tag = prefix.rsplit("-", 1)[1]
    return base.model_copy(
        update={
            "database_url": database_url,
            "redis_key_prefix": prefix,
            "queue_name": f"q-{tag}",
            "rate_limit_per_minute": 10_000,
            "webhook_secret": "test-secret",
            "allow_private_network": True,
            "reconcile_every_s": 0.0,
            "reconcile_after_s": 300.0,
        }
    )


@pytest.fixture
def qsettings(tiny_settings: Settings) -> Settings:
    """SQLite queue settings (the failure tests). Their subject is crashes and outages, and each
    restarted pool child loads the models again: the v1 caption model loads in milliseconds,
    the default v3 in seconds. The end-to-end tests run the default."""
    from workers.caption import LINEAR_MODEL_FILE

    return queue_settings_for(tiny_settings, None).model_copy(
        update={"caption_model_file": LINEAR_MODEL_FILE}
    )


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator:
    started: list[Worker] = []

    def make(settings: Settings, **kw) -> Worker:
        w = Worker(settings, tmp_path / f"worker{len(started)}.log", **kw).start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


@pytest.fixture(scope="session", autouse=True)
def _drop_test_redis_keys() -> Iterator[None]:
    yield
    from tests.support.infra import drop_prefixes

    drop_prefixes()
