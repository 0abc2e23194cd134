"""Shared fixtures: isolated settings (temp cache/data dirs), a tiny real CLIP checkpoint, and
Pillow-made images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from workers.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

RED, GREEN, BLUE, GREY = (220, 20, 20), (20, 200, 20), (20, 20, 220), (128, 128, 128)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings that touch nothing outside the test's temp dir and never the network."""
    return Settings(
        cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", offline=True, batch_size=4
    )


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.fakes import make_tiny_clip

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
