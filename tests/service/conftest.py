"""API fixtures: an app on a temp SQLite database, the shared Redis under a unique key prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from workers.config import Settings
from workers.store import open_database
from workers.store.keys import create_key


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Every API test runs on both backends: SQLite (default) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    from tests.support.infra import fresh_pg_database

    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def api_settings(settings: Settings, database_url: str | None) -> Settings:
    from tests.support.infra import new_prefix

    prefix = new_prefix()
    tag = prefix.rsplit("-", 1)[1]
    return settings.model_copy(
        update={
            "database_url": database_url,
            "redis_key_prefix": prefix,
            "queue_name": f"q-{tag}",
            "rate_limit_per_minute": 1000,
            "webhook_secret": "test-secret",
            "allow_private_network": True,
            "max_image_pixels": 1_000_000,
        }
    )


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    from service.app import create_app

    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture
def api_key(api_settings: Settings, client: TestClient) -> str:
    return create_key(open_database(api_settings, upgrade=False), "tester")


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="session", autouse=True)
def _drop_test_redis_keys() -> Iterator[None]:
    yield
    from tests.support.infra import drop_prefixes

    drop_prefixes()
