"""The int8 image tower (`image_precision = "int8"`).

The visual transformer's linear layers (attention in/out projections, the MLP) become dynamically
quantised ones: int8 weights per output channel, activations scaled per call, fbgemm kernels.
torch's own quantisation was chosen over an exported ONNX Runtime graph by measuring both on the
same machine (figures in model_cards/scene-detector.md); it needs no new dependency and no
export step.

`nn.MultiheadAttention` keeps its input projection as a bare parameter, which dynamic
quantisation cannot reach, so each one in the tower is first replaced by `_Attention`: the same
arithmetic with the projection as an `nn.Linear`, then `scaled_dot_product_attention`.

Quantising ViT-B/32 takes seconds, so the result is cached in `cache_dir/int8/`, keyed by the
weights' sha256 and `ENGINE`; later starts only re-pack the stored int8 weights. The cache is
safetensors (int8 weights, per-channel scales and zero points, biases): no pickle. A cache file
that does not match the model is rebuilt, never half-used.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workers.errors import ConfigError
from workers.int8_store import layer_tensors, read_layer, save_atomically

log = logging.getLogger("backfire.scenes")

#: Part of the cache key and of the file's metadata: a change to how layers are quantised or
#: stored must not load an older file.
ENGINE = f"torch{torch.__version__.split('+')[0]}-dynamic-int8-v1"
#: Suffix of the model id: int8 verdicts are never mixed with float32 ones.
MODEL_ID_SUFFIX = "-int8"


class _Attention(nn.Module):
    """`nn.MultiheadAttention` (self-attention, no dropout at inference) with its input
    projection as an `nn.Linear`, so that quantisation reaches it."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        d = mha.embed_dim
        self.heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.qkv = torch.nn.utils.skip_init(nn.Linear, d, 3 * d, bias=mha.in_proj_bias is not None)
        self.out = torch.nn.utils.skip_init(nn.Linear, d, d, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight = mha.in_proj_weight
            self.out.weight = mha.out_proj.weight
            if mha.in_proj_bias is not None:
                self.qkv.bias = mha.in_proj_bias
            if mha.out_proj.bias is not None:
                self.out.bias = mha.out_proj.bias

    def forward(
        self, q: torch.Tensor, k: Any = None, v: Any = None, need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:  # fmt: skip
        # open_clip's vision blocks call attn(x, x, x, ...): self-attention only.
        x = q if self.batch_first else q.transpose(0, 1)
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        o = self.out(o.transpose(1, 2).reshape(b, n, d))
        return (o if self.batch_first else o.transpose(0, 1)), None


def _check_supported(visual: nn.Module, model_name: str) -> None:
    if type(visual).__name__ != "VisionTransformer":
        raise ConfigError(
            f"The int8 image tower supports open_clip's ViT image towers; {model_name} has a "
            f"{type(visual).__name__}. Use image_precision float32 for it."
        )
    for m in visual.modules():
        if isinstance(m, nn.MultiheadAttention) and (
            not m._qkv_same_embed_dim or m.bias_k is not None
        ):
            raise ConfigError(
                f"{model_name}'s image tower has an attention layer the int8 path does not "
                "handle (separate key/value sizes or learned key bias); use float32."
            )


def _swap_attention(visual: nn.Module) -> None:
    for parent in list(visual.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, _Attention(child))


def _quantize(visual: nn.Module) -> None:
    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao (not a dependency);
        # it works in the pinned torch, so the notice is noise to a user.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantize_dynamic(
            visual, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )


def _quantized_layers(visual: nn.Module) -> dict[str, Any]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {n: m for n, m in visual.named_modules() if isinstance(m, DynamicLinear)}


def _save(visual: nn.Module, path: Path, model_id: str) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in _quantized_layers(visual).items():
        tensors |= layer_tensors(name, layer)
    save_atomically(tensors, path, {"engine": ENGINE, "model_id": model_id})


def _load(visual: nn.Module, path: Path, model_id: str) -> bool:
    """Replace the tower's linear layers with the cached int8 ones. False (the tower untouched)
    when the file is unreadable or was built for something else."""
    from safetensors import safe_open

    linears = {n: m for n, m in visual.named_modules() if type(m) is nn.Linear}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("engine") != ENGINE or meta.get("model_id") != model_id:
                return False
            stored = set(f.keys())  # a safe_open handle is not a mapping
            names = {k.rsplit(".", 1)[0] for k in stored}
            if names != set(linears):
                return False
            built = {name: read_layer(f, name, lin.in_features, lin.out_features, stored)
                     for name, lin in linears.items()}  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a damaged cache is rebuilt, whatever broke in it
        log.warning("int8 cache %s unreadable (%s); rebuilding it", path, e)
        return False
    for name, layer in built.items():
        parent_name, _, attr = name.rpartition(".")
        setattr(visual.get_submodule(parent_name) if parent_name else visual, attr, layer)
    return True


def cache_file(cache_dir: Path, weights_sha256: str) -> Path:
    return cache_dir / "int8" / f"visual-{weights_sha256[:32]}-{ENGINE}.safetensors"


def make_int8(
    visual: nn.Module, model_name: str, model_id: str, weights_sha256: str, cache_dir: Path
) -> bool:
    """Turn `visual` (float32, eval) into the int8 tower in place, from the cache when it holds
    this model, else by quantising and filling the cache. Returns True when the cache served."""
    _check_supported(visual, model_name)
    _swap_attention(visual)
    path = cache_file(cache_dir, weights_sha256)
    if path.is_file() and _load(visual, path, model_id):
        return True
    log.warning("Building the int8 image tower for %s (once; cached in %s)", model_id, path.parent)
    _quantize(visual)
    try:
        _save(visual, path, model_id)
    except OSError as e:  # a read-only cache costs the next start seconds, not this run
        log.warning("Could not cache the int8 image tower in %s: %s", path.parent, e)
    return False
