"""The one place that imports open_clip, so that it costs only what the architecture needs.

open_clip imports Hugging Face `transformers` whenever it is installed (it is here: the caption
encoder's packages pull it in), for the few architectures whose text tower or tokenizer comes from
Hugging Face, and for CoCa's caption generation. For every other architecture that import is a
second or two of each worker's and each `backfire` run's start-up spent on code never called.
So when the architecture's config shows no Hugging Face part, `transformers` is hidden while
open_clip imports (open_clip then records it as absent); otherwise it imports as usual.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

#: Keys of an open_clip config that make it need `transformers`.
_HF_TEXT_KEYS = ("hf_model_name", "hf_tokenizer_name")


def import_open_clip(
    model_name: str | None = None, config_file: str | Path | None = None
) -> ModuleType:
    """open_clip, imported lean when `model_name` (or `config_file`) has no Hugging Face part.

    Without a model name nothing is known, and open_clip imports as usual."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    if "transformers" in sys.modules or _needs_transformers(model_name, config_file):
        import open_clip

        return open_clip
    sys.modules["transformers"] = None  # type: ignore[assignment]  # makes `import` raise ImportError
    try:
        import open_clip
    finally:
        del sys.modules["transformers"]
    return open_clip


def _needs_transformers(model_name: str | None, config_file: str | Path | None) -> bool:
    cfg = _read_config(model_name, config_file)
    if cfg is None:
        return True  # an architecture we cannot read beforehand: take no chances
    text = cfg.get("text_cfg") or {}
    return "multimodal_cfg" in cfg or any(k in text for k in _HF_TEXT_KEYS)


def _read_config(model_name: str | None, config_file: str | Path | None) -> dict[str, Any] | None:
    """The architecture's JSON config: the given file, else open_clip's bundled one, read from
    the installed package's files without importing it."""
    path: Path | None = Path(config_file) if config_file is not None else None
    if path is None and model_name:
        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            return None
        package = Path(next(iter(spec.submodule_search_locations)))
        path = package / "model_configs" / f"{model_name}.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None
