"""CLIP image/text encoders behind one small seam.

`ImageTextEncoder` is what the scene scorer needs: prepare a decoded picture (thread-safe, runs in
loader threads), encode a batch of prepared pictures, encode texts, and the model's logit scale.
`ClipEncoder` is the real one (open_clip). Tests plug deterministic fakes in at this seam.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from workers.errors import ConfigError, ModelError
from workers.scenes.loading import build_from_checkpoint, release_file_pages
from workers.scenes.preprocess import fast_preprocess
from workers.scenes.weights import Weights, resolve_weights

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


class ClipEncoder:
    """open_clip model loaded strictly: real weights or a clear error, never silent random."""

    def __init__(self, settings: Settings, processes: int = 1) -> None:
        import torch

        from workers.scenes.openclip import import_open_clip

        open_clip = import_open_clip(settings.model_name, settings.model_config_file)

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

        weights = resolve_weights(model_name, settings)
        self.model_id = weights.model_id
        try:
            model, preprocess = build_from_checkpoint(
                model_name, weights.path, weights.tag_cfg, self.device
            )
        except ModelError:
            raise
        except Exception as e:  # noqa: BLE001 - open_clip signals bad weights in many ways
            raise ModelError(f"Could not load weights {weights.path} into {model_name}: {e}") from e
        if settings.image_precision not in ("float32", "int8"):  # a CLI value skips validation
            raise ConfigError(
                f"Unknown image precision {settings.image_precision!r}: use float32 or int8."
            )
        if settings.image_precision == "int8":
            self._to_int8(model, model_name, weights, settings)
        self.model = model
        self._weights_path = weights.path
        self.preprocess = fast_preprocess(model.visual.preprocess_cfg, preprocess)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.logit_scale = float(model.logit_scale.exp().item())
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)

    def _to_int8(self, model: Any, model_name: str, weights: Weights, settings: Settings) -> None:
        from workers.scenes.int8 import MODEL_ID_SUFFIX, make_int8

        self.model_id = weights.model_id + MODEL_ID_SUFFIX
        before = list(model.visual.parameters())
        make_int8(model.visual, model_name, self.model_id, weights.sha256(settings),
                  settings.cache_dir)  # fmt: skip
        # The float weights the int8 layers replaced were read to quantise them (when the cache
        # did not serve): give their pages back to the file rather than keep them resident.
        kept = {id(p) for p in model.visual.parameters()}
        release_file_pages([p for p in before if id(p) not in kept], weights.path)

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

    def release_text_tower(self) -> None:
        """The prompt embeddings are cached: the text weights need not stay in memory."""
        visual = {id(p) for p in self.model.visual.parameters()}
        text = [p for p in self.model.parameters() if id(p) not in visual]
        release_file_pages(text, self._weights_path)


def pull_weights(settings: Settings) -> str:
    """Download (or find in the cache) the configured pretrained weights. Returns the model id."""
    if settings.checkpoint is not None:
        raise ConfigError("A checkpoint file is configured; there is nothing to pull.")
    return ClipEncoder(settings.model_copy(update={"offline": False})).model_id
