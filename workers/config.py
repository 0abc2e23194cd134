"""The one settings object.

Every knob of the engine, API and workers lives here, read once from the environment
(`BACKFIRE_` prefix) or a `.env` file, then passed on. CLI options override fields by building a
copy with `settings.model_copy(update=...)`; nothing else reads the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent
#: Versioned data that steers the models (prompts, policy). Shipped inside the repository.
MODEL_CARDS_DIR = PACKAGE_ROOT.parent / "model_cards"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "backfire"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "backfire"


class Settings(BaseSettings):
    # An empty variable (BACKFIRE_CHECKPOINT=) means "not set", as it does in a shell.
    model_config = SettingsConfigDict(
        env_prefix="BACKFIRE_", env_file=".env", extra="ignore", env_parse_none_str=""
    )

    # --- scene model -------------------------------------------------------------------------
    model_name: str = Field("ViT-B-32", description="open_clip architecture name.")
    pretrained: str = Field(
        "datacomp_xl_s13b_b90k",
        description="open_clip pretrained tag (downloaded on first use into cache_dir).",
    )
    checkpoint: Path | None = Field(
        None, description="Local weights file (.safetensors or .pt/.bin); overrides `pretrained`."
    )
    model_config_file: Path | None = Field(
        None,
        description="JSON architecture config for a custom open_clip model (fine-tunes, tests).",
    )
    offline: bool = Field(
        False, description="Never touch the network for weights; use cache_dir or checkpoint only."
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, mps.")
    batch_size: int = Field(8, ge=1, le=1024)
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = cores / workers.")
    scenes_file: Path = Field(MODEL_CARDS_DIR / "scenes.yaml")
    policy_file: Path = Field(MODEL_CARDS_DIR / "verdict.yaml")
    caption_model_file: Path | None = Field(
        None,
        description="Trained caption sarcasm model (.safetensors: v3/v2 adapter or v1 linear); "
        "None = the shipped default (v3); 'cues-v0' = the v0 cue rules.",
    )
    caption_encoder_dir: Path | None = Field(
        None,
        description="Folder with the caption model's base encoder (model.safetensors + "
        "tokenizer.json: all-mpnet-base-v2 for v3, all-MiniLM-L6-v2 for v2); None = the packaged "
        "copy (v3's is unpacked into cache_dir on first use).",
    )

    caption_precision: Literal["int8", "float32", "bfloat16"] = Field(
        "int8",
        description="Precision of the adapter caption models' layers. int8 (smoothed dynamic "
        "quantisation) is ~2-3x faster than float32 on any x86 CPU with the same validation "
        "figures (model_cards/caption-sarcasm.md); float32 is the reference; bfloat16 is fast "
        "only on CPUs with AMX/AVX512-BF16. The model id gains '-int8' / '-bf16', so verdicts "
        "of different precisions are never mixed.",
    )

    image_precision: Literal["float32", "int8"] = Field(
        "float32",
        description="Precision of the CLIP image tower. int8 (dynamically quantised linear "
        "layers, built once per weights file and cached in cache_dir/int8) runs 2-3x faster on "
        "x86 CPUs; float32 stays the default until you have compared the two on your own "
        "labelled posts. The model id gains '-int8', so verdicts of different precisions are "
        "never mixed.",
    )

    # --- storage -----------------------------------------------------------------------------
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    data_dir: Path = Field(default_factory=_default_data_dir)
    media_dir: Path | None = Field(None, description="Content-addressed media; default data/media.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data.")
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- decoding and fetching untrusted media ------------------------------------------------
    max_image_pixels: int = Field(60_000_000, description="Refuse images with more pixels.")
    max_image_side: int = Field(
        30_000, ge=1, description="Refuse images wider or taller than this many pixels."
    )
    max_image_aspect: float = Field(
        50.0,
        ge=1.0,
        description="Refuse images whose long side is more than this many times the short side: "
        "the model resizes the short side to its input size (224 px), so this also bounds the "
        "resized picture (224 × 11,200 px at 50:1).",
    )
    max_image_bytes: int = Field(25 * 1024 * 1024, description="Refuse larger downloads/uploads.")
    fetch_timeout_s: float = Field(
        10.0, gt=0, description="Deadline of one download attempt (connect to last byte)."
    )
    fetch_post_deadline_s: float = Field(
        15.0,
        gt=0,
        description="Deadline of a post's whole media download in batch runs, retries and "
        "backoff waits included: a server that drips bytes holds a post this long at most.",
    )
    fetch_max_redirects: int = 5
    allow_private_network: bool = Field(
        False, description="Allow URLs resolving to loopback/private addresses (tests, intranets)."
    )
    loader_threads: int = Field(2, ge=1, description="Threads reading/fetching/decoding media.")
    # --- fetching media at scale (batch runs over exports) -----------------------------------
    fetch_concurrency: int = Field(16, ge=1, description="Downloads in flight at once.")
    fetch_per_host: int = Field(8, ge=1, description="Downloads in flight per host (politeness).")
    fetch_retries: int = Field(3, ge=0, description="Retries on 429/5xx/timeouts/dropped links.")
    fetch_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles, jittered.")
    fetch_retry_after_max_s: float = Field(60.0, ge=0, description="Cap on a server's Retry-After.")
    fetch_ahead: int = Field(
        128, ge=1, description="Posts whose media are downloaded ahead of the model (memory bound)."
    )
    media_cache_dir: Path | None = Field(
        None,
        description="Downloaded-media cache kept across runs; default a per-output cache under "
        "cache_dir, removed when the run completes.",
    )

    # --- API and queue (service/, workers/queue/app.py) ---------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_max_body_bytes: int = Field(
        20 * 1024 * 1024, description="Request bodies are cut off (413) past this many bytes."
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per API key per minute, shared via Redis; 0 = off."
    )
    auth_failures_per_minute: int = Field(
        30,
        ge=0,
        description="Failed authentications (a key sent, refused) per client address per minute, "
        "shared via Redis; past it the address gets 429 before any key is looked up. 0 = off.",
    )
    api_download_threads: int = Field(
        32,
        ge=1,
        description="Threads downloading `image_url` posts in each API process (their own pool: "
        "slow URLs never hold the threads other requests need); also the most downloads in "
        "flight at once (503 past it).",
    )
    api_downloads_per_key: int = Field(
        4, ge=1, description="`image_url` downloads in flight per API key and API process (429)."
    )
    storage_full_retry_after_s: int = Field(
        30, ge=1, description="Retry-After of the 507 answered while the media disk is full."
    )
    metrics_token: str | None = Field(
        None,
        description="Bearer token that GET /metrics requires; unset = no /metrics route (404). "
        "The metrics show post counts across every key: operators only.",
    )
    api_key_cache_entries: int = Field(
        10_000,
        ge=1,
        description="Key ids (known and unknown) each API process remembers for api_key_cache_s.",
    )
    redis_key_prefix: str = Field("backfire", description="Prefix of every Redis key we write.")
    queue_name: str = Field("backfire", description="Celery queue the scoring tasks go to.")
    api_key_cache_s: float = Field(
        2.0,
        ge=0,
        description="How long an API process reuses a key it looked up before reading it again: "
        "a revocation takes effect within this many seconds in every API process (at once in "
        "the process that revokes it). 0 reads the key on every request.",
    )
    redis_timeout_s: float = Field(1.0, description="Connect/read timeout for Redis calls.")
    worker_concurrency: int = Field(1, ge=1, description="Worker processes per `backfire worker`.")
    task_time_limit_s: int = Field(300, description="Hard time limit of one scoring task.")
    visibility_timeout_s: int = Field(
        3600, description="Redis redelivers unacked messages after this; above the slowest task."
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts (worker crashes or task errors) before quarantine."
    )
    task_retry_backoff_s: float = Field(
        5.0, ge=0, description="Delay before retrying a task that raised; doubles per attempt."
    )
    reconcile_after_s: float = Field(
        300.0, description="Re-enqueue posts left queued/running longer than this."
    )
    reconcile_every_s: float = Field(
        30.0, description="Reconciler period inside `backfire worker`; 0 = off."
    )
    webhook_secret: str | None = Field(
        None, description="HMAC-SHA256 secret signing webhook bodies; callbacks need it set."
    )
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_s: float = Field(2.0, description="First retry delay; doubles per attempt.")
    webhook_timeout_s: float = 10.0

    # --- early-warning alerts (workers/notify/) ----------------------------------------------
    alert_attempts: int = Field(4, ge=1, description="Tries per alert POST before it is failed.")
    alert_backoff_s: float = Field(1.0, ge=0, description="First alert retry delay; doubles.")
    alert_timeout_s: float = Field(10.0, description="Deadline of one alert POST.")
    # --- live watch (workers/live/, workers/sources/live/) -----------------------------------
    watch_backfill: int = Field(
        200,
        ge=0,
        description="On the first watch of a (source, query): how many of the posts already "
        "there are scored (the newest ones, oldest first) before following new ones. Later runs "
        "continue from the saved cursor instead. 0 = only posts published from now on.",
    )
    watch_fetch_concurrency: int = Field(
        4,
        ge=1,
        description="`watch --queue`: images of a page downloaded at once before each post goes "
        "through ingest (small: the workers, not the downloads, set the pace).",
    )

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir or self.data_dir / "media"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'backfire.db'}"

    def torch_threads(self, processes: int = 1) -> int:
        """Threads per process: the cores shared out among the worker processes."""
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // max(1, processes))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read from the environment once per process. A bad value is a `ConfigError`
    naming it, which each boundary (CLI exit 2, worker and API start-up) reports once."""
    from pydantic import ValidationError

    from workers.errors import ConfigError

    try:
        return Settings()
    except ValidationError as e:
        raise ConfigError(f"Invalid BACKFIRE_* setting:\n{e}") from None
