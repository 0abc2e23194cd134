"""Real infrastructure for queue/API tests: a throwaway PostgreSQL database, a private
redis-server, `celery worker` and `uvicorn` subprocesses configured through BACKFIRE_ env vars."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from workers.config import Settings

REPO = Path(__file__).resolve().parents[2]
#: Redis key prefixes this test session used, deleted from the shared Redis at the end.
PREFIXES: set[str] = set()


def new_prefix() -> str:
    prefix = f"bftest-{uuid.uuid4().hex[:10]}"
    PREFIXES.add(prefix)
    return prefix


def drop_prefixes(redis_url: str = "redis://127.0.0.1:6379/0") -> None:
    import redis

    try:
        r = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
        for prefix in PREFIXES:
            for key in r.scan_iter(f"{prefix}:*", count=1000):
                r.delete(key)
    except redis.RedisError:
        pass


PG_ADMIN = os.environ.get("BACKFIRE_TEST_PG_ADMIN", "postgresql://root@127.0.0.1:5432/postgres")


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"backfire_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class RedisServer:
    """Our own redis-server on a free port, so stopping it disturbs nobody else."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        def up() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
            except redis.RedisError:
                return False

        wait_for(up, 10, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker/API subprocess needs to share `settings` with the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFIRE_")}
    fields = {
        "DATABASE_URL": settings.resolved_database_url,
        "MEDIA_DIR": str(settings.resolved_media_dir),
        "DATA_DIR": str(settings.data_dir),
        "CACHE_DIR": str(settings.cache_dir),
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "QUEUE_NAME": settings.queue_name,
        "OFFLINE": "1",
        "THREADS": "1",
        "RATE_LIMIT_PER_MINUTE": str(settings.rate_limit_per_minute),
        "RECONCILE_EVERY_S": str(settings.reconcile_every_s),
        "RECONCILE_AFTER_S": str(settings.reconcile_after_s),
        "ALLOW_PRIVATE_NETWORK": "1" if settings.allow_private_network else "0",
        "WEBHOOK_BACKOFF_S": str(settings.webhook_backoff_s),
        "MAX_ATTEMPTS": str(settings.max_attempts),
        "TASK_RETRY_BACKOFF_S": str(settings.task_retry_backoff_s),
    }
    if settings.model_config_file:
        fields["MODEL_CONFIG_FILE"] = str(settings.model_config_file)
    if settings.checkpoint:
        fields["CHECKPOINT"] = str(settings.checkpoint)
    if settings.webhook_secret:
        fields["WEBHOOK_SECRET"] = settings.webhook_secret
    if settings.caption_model_file:
        fields["CAPTION_MODEL_FILE"] = str(settings.caption_model_file)
    env.update({f"BACKFIRE_{k}": v for k, v in fields.items()})
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


class Worker:
    """`celery worker --pool prefork --concurrency 1` as a subprocess."""

    def __init__(self, settings: Settings, log: Path, app: str = "workers.queue.app", **env: str):
        self.settings = settings
        self.log = log
        self.app = app
        self.env = env_for(settings, **env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self._log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app, "worker", "--pool", "prefork",
             "--concurrency", "1", "-Q", self.settings.queue_name, "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-l", "INFO", "-n", f"t{os.getpid()}@%h"],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: "ready." in self.log.read_text(errors="replace"), 120, "worker ready")
        return self

    def children(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def kill_child(self) -> int:
        kids = self.children()
        assert kids, "no pool child to kill"
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        return len(kids)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        self._log.close()


class Api:
    """`uvicorn service.app:app` as a subprocess (where real HTTP matters). `env`: more
    variables (BACKFIRE_* settings env_for does not carry); `wrap`: a command the server is run
    under (e.g. `unshare` with a small filesystem mounted first)."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        env: dict[str, str] | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.env = env_for(settings, **(env or {}))
        self.log = log
        self.wrap = wrap or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Api:
        import httpx

        self._log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "uvicorn", "service.app:app", "--host",
             "127.0.0.1", "--port", str(self.port), "--no-access-log"],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "uvicorn")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
            self._log.close()
