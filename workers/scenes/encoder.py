"""CLIP image/text encoders behind one small seam.

`ImageTextEncoder` is what the scene scorer needs: prepare a decoded picture (thread-safe, runs in
loader threads), encode a batch of prepared pictures, encode texts, and the model's logit scale.
`ClipEncoder` is the real one (open_clip). Tests plug deterministic fakes in at this seam.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from workers.errors import ConfigError, ModelError, WeightsMissing
from workers.scenes.loading import build_from_checkpoint
from workers.scenes.preprocess import fast_preprocess

if TYPE_CHECKING:
    from PIL import Image

    from workers.config import Settings


class ImageTextEncoder(Protocol):
    model_id: str
    logit_scale: float
    image_size: int

    def prepare(self, image: Image.Image) -> Any: ...

    def encode_images(self, prepared: list[Any]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per picture."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text."""
        ...


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_help(settings: Settings) -> str:
    return (
        f"How to get the weights for {settings.model_name} ({settings.pretrained}):\n"
        f"  • on a machine with internet access: `backfire model pull` (downloads into "
        f"{settings.cache_dir / 'open_clip'}); copy that folder to the same path here or point "
        f"BACKFIRE_CACHE_DIR at it;\n"
        f"  • or use a local weights file: `--checkpoint FILE` / BACKFIRE_CHECKPOINT=FILE "
        f"(.safetensors preferred)."
    )


class ClipEncoder:
    """open_clip model loaded strictly: real weights or a clear error, never silent random."""

    def __init__(self, settings: Settings, processes: int = 1) -> None:
        import open_clip
        import torch

        torch.set_num_threads(settings.torch_threads(processes))
        self._torch = torch
        self.device = torch.device(settings.device)
        model_name = settings.model_name
        if settings.model_config_file is not None:
            cfg = Path(settings.model_config_file)
            if not cfg.is_file():
                raise ConfigError(f"Model config file not found: {cfg}")
            # open_clip names a registered config after its file stem.
            open_clip.add_model_config(cfg)
            model_name = cfg.stem
        if model_name not in open_clip.list_models():
            raise ConfigError(
                f"Unknown open_clip architecture {model_name!r}; see `open_clip.list_models()`."
            )

        if settings.offline:
            _hub_offline()
        checkpoint, tag_cfg = self._resolve_weights(open_clip, model_name, settings)
        try:
            model, preprocess = build_from_checkpoint(model_name, checkpoint, tag_cfg, self.device)
        except ModelError:
            raise
        except Exception as e:  # noqa: BLE001 - open_clip signals bad weights in many ways
            raise ModelError(f"Could not load weights {checkpoint} into {model_name}: {e}") from e
        self.model = model
        self.preprocess = fast_preprocess(model.visual.preprocess_cfg, preprocess)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.logit_scale = float(model.logit_scale.exp().item())
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)

    def _resolve_weights(
        self, open_clip: Any, model_name: str, settings: Settings
    ) -> tuple[str, dict[str, Any] | None]:
        """The local weights file (downloading a pretrained tag into the cache if allowed) and
        the tag's preprocessing config. Sets `model_id`."""
        if settings.checkpoint is not None:
            ckpt = Path(settings.checkpoint)
            if not ckpt.is_file():
                raise WeightsMissing(f"Checkpoint file not found: {ckpt}\n{weights_help(settings)}")
            self.model_id = f"{model_name}@sha256:{_file_sha256(ckpt)[:16]}"
            return str(ckpt), None
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if settings.pretrained not in tags:
            raise ConfigError(
                f"{settings.pretrained!r} is not a pretrained tag of {model_name}; "
                f"known tags: {', '.join(tags) or 'none'}."
            )
        self.model_id = f"{model_name}@{settings.pretrained}"
        from open_clip.pretrained import download_pretrained

        tag_cfg = open_clip.get_pretrained_cfg(model_name, settings.pretrained)
        cache_dir = settings.cache_dir / "open_clip"
        try:
            path = download_pretrained(tag_cfg, cache_dir=str(cache_dir))
        except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
            raise WeightsMissing(
                f"The weights for {self.model_id} are not in the cache and could not be "
                f"downloaded ({_first_line(e)}).\n{weights_help(settings)}"
            ) from e
        if not path:
            raise WeightsMissing(
                f"No download source for {self.model_id}.\n{weights_help(settings)}"
            )
        return str(path), tag_cfg

    def _resolve_weights(
        self, open_clip: Any, model_name: str, settings: Settings
    ) -> tuple[str, dict[str, Any] | None]:
        """The local weights file (downloading a pretrained tag into the cache if allowed) and
        the tag's preprocessing config. Sets `model_id`."""
        if settings.checkpoint is not None:
            ckpt = Path(settings.checkpoint)
            if not ckpt.is_file():
                raise WeightsMissing(f"Checkpoint file not found: {ckpt}\n{weights_help(settings)}")
            self.model_id = f"{model_name}@sha256:{_file_sha256(ckpt)[:16]}"
            return str(ckpt), None
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if settings.pretrained not in tags:
            raise ConfigError(
                f"{settings.pretrained!r} is not a pretrained tag of {model_name}; "
                f"known tags: {', '.join(tags) or 'none'}."
            )
        self.model_id = f"{model_name}@{settings.pretrained}"
        from open_clip.pretrained import download_pretrained

        tag_cfg = open_clip.get_pretrained_cfg(model_name, settings.pretrained)
        cache_dir = settings.cache_dir / "open_clip"
        try:
            path = download_pretrained(tag_cfg, cache_dir=str(cache_dir))
        except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
            raise WeightsMissing(
                f"The weights for {self.model_id} are not in the cache and could not be "
                f"downloaded ({_first_line(e)}).\n{weights_help(settings)}"
            ) from e
        if not path:
            raise WeightsMissing(
                f"No download source for {self.model_id}.\n{weights_help(settings)}"
            )
        return str(path), tag_cfg

    def prepare(self, image: Image.Image) -> Any:
        return self.preprocess(image)

    def encode_images(self, prepared: list[Any]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            batch = torch.stack(prepared).to(self.device)
            emb = self.model.encode_image(batch, normalize=True)
        return emb.float().cpu().numpy()

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[i : i + batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out, axis=0)


def _hub_offline() -> None:
    """Make huggingface_hub (open_clip's downloader) answer from its cache only. It reads
    HF_HUB_OFFLINE once at import, so an already-imported hub needs its constant set too."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def pull_weights(settings: Settings) -> str:
    """Download (or find in the cache) the configured pretrained weights. Returns the model id."""
    if settings.checkpoint is not None:
        raise ConfigError("A checkpoint file is configured; there is nothing to pull.")
    return ClipEncoder(settings.model_copy(update={"offline": False})).model_id
