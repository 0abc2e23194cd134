"""Where the CLIP weights come from: a local checkpoint, or a pretrained tag that open_clip
downloads into our cache. Cache first; the network only when allowed and reachable, so an
air-gapped machine gets its answer in a second instead of a minute of retries."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from workers.errors import ConfigError, WeightsMissing
from workers.hashing import memo_file_sha256

if TYPE_CHECKING:
    from workers.config import Settings


@dataclass(frozen=True)
class Weights:
    model_id: str
    path: str
    #: The pretrained tag's config (mean/std/interpolation, quick_gelu); None for checkpoints.
    tag_cfg: dict[str, Any] | None

    def sha256(self, settings: Settings) -> str:
        return memo_file_sha256(Path(self.path), settings.cache_dir)


def weights_help(settings: Settings) -> str:
    return (
        f"How to get the weights for {settings.model_name} ({settings.pretrained}):\n"
        f"  • on a machine with internet access: `backfire model pull` (downloads into "
        f"{settings.cache_dir / 'open_clip'}); copy that folder to the same path here or point "
        f"BACKFIRE_CACHE_DIR at it;\n"
        f"  • or use a local weights file: `--checkpoint FILE` / BACKFIRE_CHECKPOINT=FILE "
        f"(.safetensors preferred)."
    )


def resolve_weights(model_name: str, settings: Settings) -> Weights:
    from workers.scenes.openclip import import_open_clip

    open_clip = import_open_clip(model_name, settings.model_config_file)

    if settings.checkpoint is not None:
        ckpt = Path(settings.checkpoint)
        if not ckpt.is_file():
            raise WeightsMissing(f"Checkpoint file not found: {ckpt}\n{weights_help(settings)}")
        digest = memo_file_sha256(ckpt, settings.cache_dir)
        return Weights(f"{model_name}@sha256:{digest[:16]}", str(ckpt), None)

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if settings.pretrained not in tags:
        raise ConfigError(
            f"{settings.pretrained!r} is not a pretrained tag of {model_name}; "
            f"known tags: {', '.join(tags) or 'none'}."
        )
    model_id = f"{model_name}@{settings.pretrained}"
    tag_cfg = open_clip.get_pretrained_cfg(model_name, settings.pretrained)
    path = _download(tag_cfg, settings, cache_only=True)
    if not path:
        if settings.offline:
            raise WeightsMissing(
                f"The weights for {model_id} are not in the cache and offline mode is on.\n"
                f"{weights_help(settings)}"
            )
        _require_reachable(tag_cfg, model_id, settings)
        path = _download(tag_cfg, settings, cache_only=False)
    if not path:
        raise WeightsMissing(f"No download source for {model_id}.\n{weights_help(settings)}")
    return Weights(model_id, str(path), tag_cfg)


def _download(tag_cfg: dict[str, Any], settings: Settings, cache_only: bool) -> str | None:
    from open_clip.pretrained import download_pretrained

    cache_dir = str(settings.cache_dir / "open_clip")
    if cache_only and not tag_cfg.get("hf_hub"):
        # URL-hosted weights: open_clip saves them under their file name in cache_dir.
        name = os.path.basename(urlparse(tag_cfg.get("url", "")).path)
        path = Path(cache_dir) / name
        return str(path) if name and path.is_file() else None
    try:
        with _hub_offline(cache_only):
            return download_pretrained(tag_cfg, cache_dir=cache_dir) or None
    except Exception as e:  # noqa: BLE001 - the hub raises many types for "not there"
        if cache_only:
            return None
        raise WeightsMissing(
            f"Downloading the weights failed ({_first_line(e)}).\n{weights_help(settings)}"
        ) from e


def _require_reachable(tag_cfg: dict[str, Any], model_id: str, settings: Settings) -> None:
    """Fail fast when the download host does not even resolve (air-gapped machine)."""
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    else:
        host = urlparse(tag_cfg.get("url", "")).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise WeightsMissing(
            f"The weights for {model_id} are not in the cache ({settings.cache_dir / 'open_clip'}) "
            f"and {host} cannot be reached from here ({e}).\n{weights_help(settings)}"
        ) from e


@contextlib.contextmanager
def _hub_offline(on: bool) -> Iterator[None]:
    """huggingface_hub (open_clip's downloader) reads HF_HUB_OFFLINE once at import, so the
    module constant is what counts; restored afterwards."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = on or before
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
