"""Dynamically quantised linear layers kept on disk: the one format of Backfire's int8 caches
(the image tower's, workers/scenes/int8.py, and the caption encoder's,
workers/caption/encoder/packed.py).

Each layer is stored as safetensors tensors (no pickle): its int8 weight, per-output-channel
scales and zero points, and its float bias. Loading re-packs the int8 weight for the CPU's
kernels (`set_weight_bias`), a fraction of what quantising the float weight costs. Files are
written beside their final name and renamed, so a killed build never leaves half a file.

Imports torch: only the int8 paths import this module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def dynamic_linear(in_features: int, out_features: int) -> Any:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return DynamicLinear(in_features, out_features, dtype=torch.qint8)


def layer_tensors(name: str, layer: Any) -> dict[str, torch.Tensor]:
    """What `read_layer` needs to rebuild the quantised `layer`, under `name.*`."""
    w, b = layer._packed_params._weight_bias()
    out = {
        f"{name}.weight": w.int_repr().contiguous(),
        f"{name}.scale": w.q_per_channel_scales().contiguous(),
        f"{name}.zero_point": w.q_per_channel_zero_points().contiguous(),
    }
    if b is not None:
        out[f"{name}.bias"] = b.detach().contiguous()
    return out


def read_layer(f: Any, name: str, in_features: int, out_features: int, stored: set[str]) -> Any:
    """The quantised linear layer `name` from an open safetensors file `f` (`stored`: its keys).
    ValueError when the stored weight has another shape."""
    w = f.get_tensor(f"{name}.weight")
    if tuple(w.shape) != (out_features, in_features) or w.dtype != torch.int8:
        raise ValueError(f"{name}: stored weight {tuple(w.shape)} {w.dtype}, "
                         f"expected ({out_features}, {in_features}) int8")
    qw = torch._make_per_channel_quantized_tensor(
        w, f.get_tensor(f"{name}.scale"), f.get_tensor(f"{name}.zero_point"), 0
    )
    bias = f.get_tensor(f"{name}.bias") if f"{name}.bias" in stored else None
    layer = dynamic_linear(in_features, out_features)
    layer.set_weight_bias(qw, bias)
    return layer


def save_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
