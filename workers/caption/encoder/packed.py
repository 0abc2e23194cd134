"""The int8 caption encoder cached on disk as built, so that a process starts it without the
float layers.

Building it from the model file means constructing the float encoder, copying 340 MB of base
layers in (v3), merging the adapters and smoothing and quantising 72 layers: seconds of every
`backfire` run's and every worker's start-up, and the float layers' memory at the peak. The
result depends only on the model file, the base weights and the code that quantises, so it is
stored once under `cache_dir/caption-int8/`, keyed by the model file's and the base weights'
sha256 and by `FORMAT`. A later start builds an empty skeleton (no initialisation, no float
layers), maps the embedding tables from the base file as usual, and reads the int8 layers and
the few float tensors (LayerNorms, adapters) from the cache.

The file is safetensors (workers/int8_store.py): no pickle. One that does not match exactly
(other format, model id, layer set or shapes, or unreadable) is ignored and rebuilt, never
half-used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from workers.caption.encoder.files import WEIGHTS, EncoderBase, mapped_tensors
from workers.caption.encoder.network import SentenceEncoder, embedding_tables
from workers.caption.encoder.quantize import ALPHA, SmoothedInt8Linear, linear_layers
from workers.int8_store import layer_tensors, read_layer, save_atomically

log = logging.getLogger("backfire.caption")

#: Part of the cache key and of the file's metadata: a change to how layers are quantised or
#: stored must not load an older file.
FORMAT = f"torch{torch.__version__.split('+')[0]}-smoothed-int8-a{ALPHA}-v1"
_FLOAT = "float."
_INV_SCALE = ".inv_scale"


def packed_file(folder: Path, model_sha256: str, base_sha256: str) -> Path:
    return folder / f"{model_sha256[:24]}-{base_sha256[:16]}-{FORMAT}.safetensors"


def save_packed(encoder: SentenceEncoder, path: Path, model_id: str) -> None:
    """Store the quantised `encoder`'s layers (not the embedding tables: they stay in the base
    file, mapped)."""
    tables = set(embedding_tables(encoder.shape).values())
    tensors: dict[str, torch.Tensor] = {}
    for name, m in linear_layers(encoder).items():
        if not isinstance(m.base, SmoothedInt8Linear):
            raise ValueError(f"{name} is not quantised")
        tensors |= layer_tensors(name, m.base.inner)
        tensors[name + _INV_SCALE] = m.base.inv_scale.contiguous()
    for name, p in encoder.named_parameters():
        if name not in tables:
            tensors[_FLOAT + name] = p.detach().contiguous()
    save_atomically(tensors, path, {"format": FORMAT, "model_id": model_id})


def load_packed(
    path: Path, folder: Path, base: EncoderBase, rank: int, alpha: float, frozen_layers: int,
    model_id: str,
) -> SentenceEncoder | None:
    """The int8 encoder from `path` over the base weights in `folder`; None (and a warning when
    the file exists but does not fit) when it cannot serve."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or meta.get("model_id") != model_id:
                raise ValueError(f"built for {meta.get('model_id')!r} ({meta.get('format')!r})")
            stored = set(f.keys())  # a safe_open handle is not a mapping
            return _assemble(f, stored, folder, base, rank, alpha, frozen_layers)
    except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt, whatever broke in it
        log.warning("int8 caption cache %s unusable (%s); rebuilding it", path, e)
        return None


def _assemble(
    f, stored: set[str], folder: Path, base: EncoderBase, rank: int, alpha: float,
    frozen_layers: int,
) -> SentenceEncoder:
    # The skeleton on the meta device: no random initialisation, and no memory for the float
    # layers the int8 ones replace.
    with torch.device("meta"):
        enc = SentenceEncoder(base.shape, rank=rank, alpha=alpha, dropout=0.0,
                              frozen_layers=frozen_layers)
    linears = linear_layers(enc)
    dims = {}
    for name, m in linears.items():
        lin = m.base
        assert isinstance(lin, nn.Linear)
        dims[name] = (lin.in_features, lin.out_features)
        m.base = nn.Identity()  # replaced below; keeps to_empty from allocating it
    enc.to_empty(device="cpu")
    tables = embedding_tables(base.shape)  # base file name -> ours
    params = dict(enc.named_parameters())
    floats = {n for n in params if n not in tables.values()}
    if {k[len(_FLOAT):] for k in stored if k.startswith(_FLOAT)} != floats:
        raise ValueError("its float tensors do not fit this encoder")
    with torch.no_grad():
        for theirs, view in mapped_tensors(folder / WEIGHTS, set(tables)).items():
            if params[tables[theirs]].shape != view.shape:
                raise ValueError(f"base table {theirs} has shape {tuple(view.shape)}")
            params[tables[theirs]].data = view
        for name in floats:
            t = f.get_tensor(_FLOAT + name)
            if t.shape != params[name].shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}")
            params[name].copy_(t)
    for name, m in linears.items():
        d_in, d_out = dims[name]
        inner = read_layer(f, name, d_in, d_out, stored)
        inv_scale = f.get_tensor(name + _INV_SCALE)
        if inv_scale.shape != (d_in,):
            raise ValueError(f"{name}: inverse scale of shape {tuple(inv_scale.shape)}")
        m.base = SmoothedInt8Linear(inner, inv_scale)
        m.merged = True
    return enc.eval().requires_grad_(False)
