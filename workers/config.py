"""The one settings object.

Every knob of the engine, API and workers lives here, read once from the environment
(`BACKFIRE_` prefix) or a `.env` file, then passed on. CLI options override fields by building a
copy with `settings.model_copy(update=...)`; nothing else reads the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

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
    model_config = SettingsConfigDict(env_prefix="BACKFIRE_", env_file=".env", extra="ignore")

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
        None, description="Trained caption sarcasm model; None = the shipped default."
    )

    # --- storage -----------------------------------------------------------------------------
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    data_dir: Path = Field(default_factory=_default_data_dir)
    media_dir: Path | None = Field(None, description="Content-addressed media; default data_dir/media.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir.")
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- decoding and fetching untrusted media ------------------------------------------------
    max_image_pixels: int = Field(60_000_000, description="Refuse images with more pixels.")
    max_image_bytes: int = Field(25 * 1024 * 1024, description="Refuse larger downloads/uploads.")
    fetch_timeout_s: float = Field(20.0, description="Whole-download deadline per URL.")
    fetch_max_redirects: int = 5
    allow_private_network: bool = Field(
        False, description="Allow URLs resolving to loopback/private addresses (tests, intranets)."
    )
    loader_threads: int = Field(2, ge=1, description="Threads reading/fetching/decoding media.")

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
    """Settings read from the environment once per process."""
    return Settings()
