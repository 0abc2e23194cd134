"""int8 inference for the adapter caption models (`caption_precision = "int8"`).

The merged linear layers are replaced by dynamically quantised ones (int8 weights per output
channel, int8 activations scaled per call): on one core v3 runs 2.8x (AVX2) to 3.9x (AVX-512
VNNI) and v2 1.6x to 1.9x faster than in float32, and the layers take a quarter of the memory.

Why not plain `quantize_dynamic`: the inputs of MPNet's linear layers carry a few outlier
channels (up to ~55 against a median of ~1.5), so one int8 scale per activation tensor leaves
every other channel a handful of levels; v3's pooled embeddings then keep only cosine ~0.4 of the
float ones. Following SmoothQuant (Xiao et al., 2023), each layer's input channel j is divided
by s_j = amax_j^alpha / wmax_j^(1-alpha) and the weight's column j multiplied by it: exact in
real arithmetic, it moves the range from the activations into the weights, which are quantised
per row. amax is measured when the model is trained, on RANGE_CAPTIONS of its training captions
run through the float model, and stored in the model file; int8 loading needs no data.

Figures on the irony validation split are in model_cards/caption-sarcasm.md.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from workers.caption.encoder.network import LoRALinear, SentenceEncoder

#: Migration strength: 0.9 measured best for v3 among 0.5 / 0.7 / 0.85 / 0.9 (pooled cosine
#: min 0.15 / 0.92 / 0.93 / 0.96 over 150 validation tweets).
ALPHA = 0.9

#: How many training captions the activation ranges are measured on (at training time; they are
#: stored in the model file). 256 gives 27 of 955 validation captions on the other side of 0.5
#: for v3; a fixed set of 24 hand-written captions gave 65 (its ranges are too narrow).
RANGE_CAPTIONS = 256
#: At most this many same-length captions per forward pass when measuring the ranges.
RANGE_BATCH = 32


class SmoothedInt8Linear(nn.Module):
    """y = int8_linear(x / s) with the weight's columns pre-multiplied by s (see the module)."""

    def __init__(self, inner: nn.Module, inv_scale: torch.Tensor) -> None:
        """`inner`: the quantised linear layer over the scaled weight; `inv_scale`: 1 / s."""
        super().__init__()
        self.inv_scale: torch.Tensor
        self.register_buffer("inv_scale", inv_scale)
        self.inner = inner

    @classmethod
    def smoothed(cls, linear: nn.Linear, act_max: torch.Tensor, alpha: float = ALPHA):
        """`linear` (float) quantised with its input channels smoothed by `act_max`."""
        w = linear.weight.detach().float()
        s = act_max.clamp(min=1e-5) ** alpha / w.abs().amax(0).clamp(min=1e-5) ** (1 - alpha)
        s = s.clamp(min=1e-5)
        # skip_init: no random initialisation to overwrite (72 of them slowed int8 loading).
        scaled = torch.nn.utils.skip_init(nn.Linear, linear.in_features, linear.out_features)
        with torch.no_grad():
            scaled.weight.copy_(w * s)
            scaled.bias.copy_(linear.bias.detach().float())
        with warnings.catch_warnings():
            # torch.ao's eager quantisation is deprecated in favour of torchao (not a dependency
            # here); it works in the pinned torch, so the notice is noise to a user.
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            inner = quantize_dynamic(  # inplace: the float copy is ours to drop
                nn.Sequential(scaled), {nn.Linear: per_channel_dynamic_qconfig},
                dtype=torch.qint8, inplace=True,
            )[0]
        return cls(inner, 1.0 / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.inv_scale)


def linear_layers(encoder: SentenceEncoder) -> dict[str, LoRALinear]:
    return {name: m for name, m in encoder.named_modules() if isinstance(m, LoRALinear)}


def activation_ranges(
    encoder: SentenceEncoder, token_ids: list[list[int]]
) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |activation| entering each linear layer of the merged,
    float `encoder` over the captions `token_ids`, as the model sees them when it scores them
    one at a time. Captions of the same token length run together: with no padding a batch
    gives each caption exactly its own activations, at a fraction of the calls."""
    layers = linear_layers(encoder)
    ranges: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_mod, inputs):
            a = inputs[0].detach().abs().float().amax(dim=(0, 1))
            ranges[name] = a if name not in ranges else torch.maximum(ranges[name], a)

        return hook

    hooks = [m.base.register_forward_pre_hook(record(n)) for n, m in layers.items()]
    try:
        with torch.inference_mode():
            for batch in _same_length_batches(token_ids, RANGE_BATCH):
                x = torch.tensor(batch)
                encoder(x, torch.ones_like(x))
    finally:
        for h in hooks:
            h.remove()
    return {n: r.clone() for n, r in ranges.items()}


def _same_length_batches(token_ids: list[list[int]], size: int) -> list[list[list[int]]]:
    by_length: dict[int, list[list[int]]] = {}
    for ids in token_ids:
        by_length.setdefault(len(ids), []).append(ids)
    return [group[i : i + size] for group in by_length.values() for i in range(0, len(group), size)]


def quantize_int8(encoder: SentenceEncoder, ranges: dict[str, torch.Tensor]) -> None:
    """Replace every merged linear layer of `encoder` by its smoothed int8 version."""
    layers = linear_layers(encoder)
    if set(ranges) != set(layers):
        raise ValueError("the activation ranges do not fit this encoder's layers")
    for name, m in layers.items():
        if m.rank and not m.merged:
            raise ValueError("merge the adapter before quantising")
        if not isinstance(m.base, nn.Linear):
            raise ValueError("this encoder is already quantised")
        m.base = SmoothedInt8Linear.smoothed(m.base, ranges[name].float())
    _return_freed_memory()


def _return_freed_memory() -> None:
    """glibc keeps the freed float32 layers (~250 MB for v3) in its heap, so without this a
    worker's resident memory would never show the saving; elsewhere there is nothing to do."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError, TypeError):  # not glibc: nothing to do
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
