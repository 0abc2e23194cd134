"""Load open_clip weights strictly and lean.

open_clip's `create_model_from_pretrained` builds the model with random weights first and then
copies the checkpoint over them: two full copies of the weights at peak (≈ 1.2 GB for ViT-B-32 on
top of ≈ 0.95 GB for torch itself). Here the model skeleton is built on the `meta` device (no
memory, no random init) and the checkpoint tensors are *assigned* into it. Safetensors files are
memory-mapped, so pages of the text tower are never read when the prompt embeddings come from the
cache. Strictness is kept: every parameter must come from the file (strict=True, and anything left
on `meta` is an error), so a model is never silently random.

open_clip's own `load_checkpoint` is reused for its format conversions (OpenAI/timm/HF layouts,
position-embedding resizes), with `assign=True` slipped into its `load_state_dict` call.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from workers.errors import ModelError


class _DropRandomInitWarning(logging.Filter):
    """open_clip logs 'initialized randomly' for the meta skeleton, which is about to be filled."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def build_from_checkpoint(
    model_name: str, checkpoint: str, tag_cfg: dict[str, Any] | None, device: Any
) -> tuple[Any, Any]:
    """(model in eval mode, inference preprocess) with weights from `checkpoint`."""
    import torch

    from workers.scenes.openclip import import_open_clip

    open_clip = import_open_clip(model_name)
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    tag_cfg = tag_cfg or {}
    quiet = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with torch.device("meta"):
            model = open_clip.create_model(
                model_name, pretrained=None, device="meta",
                force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            )  # fmt: skip
    finally:
        root.removeFilter(quiet)

    # Instance attribute shadows the method for the duration of open_clip's call only.
    model.load_state_dict = functools.partial(type(model).load_state_dict, model, assign=True)
    try:
        open_clip.load_checkpoint(model, checkpoint, strict=True, weights_only=True)
    finally:
        del model.load_state_dict
    _materialise_masks(model)
    _check_nothing_left_on_meta(model, checkpoint)
    model = model.to(device).eval()

    cfg = merge_preprocess_dict(open_clip.get_model_preprocess_cfg(model), tag_cfg)
    open_clip.set_model_preprocess_cfg(model, cfg)
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    return model, preprocess


def _materialise_masks(model: Any) -> None:
    """Non-persistent buffers are not in any checkpoint. open_clip has one kind: the text tower's
    causal attention mask, rebuilt here exactly as open_clip builds it."""
    import torch

    for module in model.modules():
        mask = module._buffers.get("attn_mask")
        if mask is not None and mask.is_meta:
            n = mask.shape[0]
            module._buffers["attn_mask"] = torch.full((n, n), float("-inf")).triu_(1)


def _check_nothing_left_on_meta(model: Any, checkpoint: str) -> None:
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing:
        raise ModelError(
            f"{checkpoint} does not provide {len(missing)} tensor(s) the model needs "
            f"(e.g. {', '.join(missing[:3])}); refusing to run with uninitialised weights."
        )


_MADV_DONTNEED = 4
_PAGE = 4096


def release_file_pages(tensors: list[Any], checkpoint: str) -> int:
    """Give back the resident pages behind `tensors` when they are a read-only memory map of the
    checkpoint file (safetensors): the kernel re-reads them from the file if they are ever
    touched again. Used for the text tower once the prompt embeddings are cached: otherwise a
    first run keeps ≈ 250 MB of text weights resident for nothing.

    Only ranges inside a mapping of `checkpoint` itself are released: on anonymous memory
    MADV_DONTNEED would zero the weights. Returns the bytes released (0 when not applicable)."""
    import ctypes
    import os

    target = os.path.realpath(checkpoint)
    spans = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].strip() == target and parts[1].startswith("r"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    spans.append((lo, hi))
    except OSError:
        return 0
    if not spans:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    released = 0
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        lo, hi = start // _PAGE * _PAGE, -(-end // _PAGE) * _PAGE
        inside = any(s <= lo and hi <= e for s, e in spans)
        if (
            inside
            and libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_DONTNEED) == 0
        ):
            released += hi - lo
    return released
