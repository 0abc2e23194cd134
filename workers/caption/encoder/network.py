"""Sentence encoders (BERT / MPNet) with low-rank adapters, in plain torch.

Two packaged, offline bases are supported (workers/caption/encoder/files.py):
- `sentence-transformers/all-MiniLM-L6-v2`, a 6-layer BERT (caption model v2);
- `sentence-transformers/all-mpnet-base-v2`, a 12-layer MPNet (caption model v3): BERT's layers
  plus a learned relative-position bias shared by every layer, positions counted from 2, no
  token types.
Both are mean-pooled, as sentence-transformers pools them.

Why not `transformers` (installed anyway, by the MiniLM package's sentence-transformers
dependency): the forward pass is 80 lines, and owning it lets the frozen embedding tables stay
views of the weights file and the adapters be merged at load. Tests check both families against
sentence-transformers on the real weights.

Fine-tuning trains low-rank adapters (LoRA: W + (alpha/r)·B·A) on every linear layer plus the
LayerNorms, so what we ship is a few MB beside the untouched base weights. For inference the
adapters are merged into the base matrices once, so scoring costs exactly the base model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderShape:
    family: str = "bert"  # "bert" or "mpnet"
    layers: int = 6
    hidden: int = 384
    heads: int = 12
    intermediate: int = 1536
    vocab: int = 30522
    positions: int = 512
    eps: float = 1e-12
    #: MPNet only: relative-position buckets (its attention bias) and the first position id.
    buckets: int = 0
    first_position: int = 0


MINILM_L6 = EncoderShape()
MPNET_BASE = EncoderShape(
    family="mpnet", layers=12, hidden=768, heads=12, intermediate=3072, vocab=30527,
    positions=514, eps=1e-5, buckets=32, first_position=2,
)

# Our names of one layer's linear layers (each gets an adapter) and LayerNorms, and theirs in
# the Hugging Face checkpoint (`encoder.layer.{i}.` + this), by family.
_HF_LAYER = {
    "bert": {
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "attn_out": "attention.output.dense",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
        "attn_norm": "attention.output.LayerNorm",
        "ffn_norm": "output.LayerNorm",
    },
    "mpnet": {
        "query": "attention.attn.q",
        "key": "attention.attn.k",
        "value": "attention.attn.v",
        "attn_out": "attention.attn.o",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
        "attn_norm": "attention.LayerNorm",
        "ffn_norm": "output.LayerNorm",
    },
}
_LINEARS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


def embedding_tables(shape: EncoderShape) -> dict[str, str]:
    """The frozen tables in the checkpoint, by our parameter name (kept as views of the file)."""
    tables = {
        "embeddings.word_embeddings.weight": "word.weight",
        "embeddings.position_embeddings.weight": "position.weight",
    }
    if shape.family == "bert":
        tables["embeddings.token_type_embeddings.weight"] = "token_type.weight"
    return tables


class LoRALinear(nn.Module):
    """nn.Linear plus a low-rank update; the update starts at zero (B = 0)."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float) -> None:
        super().__init__()
        # nn.Module: a plain Linear, or its int8 replacement once quantised (quantize.py).
        self.base: nn.Module = nn.Linear(d_in, d_out)
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
            if not isinstance(self.base, nn.Linear):
                raise ValueError("a quantised layer cannot take its adapter in")
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
            self.merged = True


class Layer(nn.Module):
    def __init__(self, s: EncoderShape, rank: int, alpha: float, dropout: float) -> None:
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


class SentenceEncoder(nn.Module):
    """A BERT or MPNet encoder + mean pooling (the sentence-transformers recipe of both bases)."""

    def __init__(
        self, shape: EncoderShape = MINILM_L6, rank: int = 8, alpha: float = 16.0,
        dropout: float = 0.1, frozen_layers: int = 0,
    ) -> None:
        """`frozen_layers`: how many bottom layers (with the embedding LayerNorm) keep the base's
        weights, without adapters: training then never back-propagates through them, and their
        outputs can be computed once per caption (see `bottom`)."""
        super().__init__()
        s = shape
        self.shape = s
        self.word = nn.Embedding(s.vocab, s.hidden)
        self.position = nn.Embedding(s.positions, s.hidden)
        frozen = [self.word, self.position]
        if s.family == "bert":
            self.token_type = nn.Embedding(2, s.hidden)
            frozen.append(self.token_type)
        else:
            self.relative_bias = nn.Embedding(s.buckets, s.heads)
            frozen.append(self.relative_bias)
        self.emb_norm = nn.LayerNorm(s.hidden, eps=s.eps)
        if not 0 <= frozen_layers < s.layers:
            raise ValueError(f"frozen_layers must be in 0..{s.layers - 1}, not {frozen_layers}")
        self.frozen_layers = frozen_layers
        self.layers = nn.ModuleList(
            Layer(s, rank if i >= frozen_layers else 0, alpha, dropout) for i in range(s.layers)
        )
        if frozen_layers:
            self.emb_norm.requires_grad_(False)
            self.layers[:frozen_layers].requires_grad_(False)
        self.dropout = dropout
        #: dtype of the transformer layers; the embedding tables stay float32 views of the file.
        self.compute_dtype = torch.float32
        for emb in frozen:
            emb.weight.requires_grad_(False)

    def use_compute_dtype(self, dtype: torch.dtype) -> None:
        """Run the layers in `dtype` (inference only): bfloat16 halves their memory and, on CPUs
        with AMX / AVX512-BF16, is ~1.6x faster, at ~1e-2 differences in the pooled vector."""
        self.layers.to(dtype)
        self.compute_dtype = dtype

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Mean-pooled token states, (batch, hidden). `attention`: 1 for tokens, 0 for padding
        (padding on the right)."""
        x = self.run_layers(self.embed(ids), attention)
        return self.pool(x, attention)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device) + self.shape.first_position
        x = self.word(ids) + self.position(pos)[None]
        if self.shape.family == "bert":
            x = x + self.token_type.weight[0]
        return F.dropout(self.emb_norm(x), self.dropout, self.training)

    def attention_bias(self, attention: torch.Tensor) -> torch.Tensor | None:
        t = attention.shape[1]
        padded = not bool(attention.all())
        if self.shape.family == "bert":
            # A boolean mask only when there is padding: a single caption runs unmasked.
            return attention[:, None, None, :].bool() if padded else None
        # MPNet: every layer adds the same learned bias for the keys' relative positions.
        mask = self.relative_bias(_relative_buckets(t, self.shape.buckets, attention.device))
        mask = mask.permute(2, 0, 1)[None]
        if padded:
            mask = mask.masked_fill(~attention[:, None, None, :].bool(), float("-inf"))
        return mask.to(self.compute_dtype)

    def run_layers(self, x: torch.Tensor, attention: torch.Tensor, start: int = 0,
                   stop: int | None = None) -> torch.Tensor:
        """Token states after layers start..stop-1, given the states entering layer `start`."""
        mask = self.attention_bias(attention)
        x = x.to(self.compute_dtype)
        for layer in self.layers[start:stop]:
            x = layer(x, mask)
        return x.float()

    def pooled_at(self, ids: torch.Tensor, attention: torch.Tensor,
                  depths: tuple[int, ...]) -> list[torch.Tensor]:
        """Mean-pooled states after each of `depths` layers (the encoder's depth = `forward`),
        all from one pass: the irony and stance heads of a caption model read one forward."""
        mask = self.attention_bias(attention)
        x = self.embed(ids).to(self.compute_dtype)
        out: dict[int, torch.Tensor] = {}
        for depth, layer in enumerate(self.layers, 1):
            x = layer(x, mask)
            if depth in depths:
                out[depth] = self.pool(x.float(), attention)
            if len(out) == len(set(depths)):
                break
        return [out[d] for d in depths]

    @staticmethod
    def pool(x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        m = attention[..., None].to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)

    @torch.no_grad()
    def bottom(self, captions: list[list[int]], batch_size: int = 32) -> list[torch.Tensor]:
        """Each caption's token states (tokens, hidden) leaving the frozen layers: fixed while
        training (no adapters, no dropout there), so training computes them once per caption.
        Run in padded batches of similar length: on 2 cores a single caption's small matrices
        keep the second core idle. Padding moves a state by ~1e-6 (summation order), which only
        training sees; scoring never uses this."""
        was_training = self.training
        self.eval()
        out: list[torch.Tensor] = [torch.empty(0)] * len(captions)
        order = sorted(range(len(captions)), key=lambda i: len(captions[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, att = padded([captions[i] for i in rows])
            x = self.run_layers(self.embed(ids), att, 0, self.frozen_layers)
            for r, i in enumerate(rows):
                out[i] = x[r, : len(captions[i])].clone()
        self.train(was_training)
        return out

    # --- weights -------------------------------------------------------------------------------
    def load_base(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy a Hugging Face BertModel / MPNetModel state dict into this module (strict: every
        tensor this module has must be there, with its shape)."""
        tables = embedding_tables(self.shape)
        own = {ours: theirs for theirs, ours in tables.items()}
        own |= {
            "emb_norm.weight": "embeddings.LayerNorm.weight",
            "emb_norm.bias": "embeddings.LayerNorm.bias",
        }
        for i in range(self.shape.layers):
            pre = f"encoder.layer.{i}."
            for ours, theirs in _HF_LAYER[self.shape.family].items():
                inner = ".base" if ours in _LINEARS else ""
                for p in ("weight", "bias"):
                    own[f"layers.{i}.{ours}{inner}.{p}"] = f"{pre}{theirs}.{p}"
        if self.shape.family == "mpnet":
            own["relative_bias.weight"] = "encoder.relative_attention_bias.weight"
        params = dict(self.named_parameters())
        frozen = set(tables.values())
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
        return {k: v.detach().clone() for k, v in self.named_parameters() if self._tuned(k)}

    def load_adapter(self, state: dict[str, torch.Tensor]) -> None:
        expected = {k for k, _ in self.named_parameters() if self._tuned(k)}
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

    def _tuned(self, name: str) -> bool:
        """Parameters fine-tuning changes: the adapters and the LayerNorms above the frozen
        layers (all of them, with the embeddings', when none is frozen)."""
        if "lora_" in name:
            return True
        if "norm" not in name:
            return False
        if name.startswith("emb_norm"):
            return self.frozen_layers == 0
        return int(name.split(".")[1]) >= self.frozen_layers

    def merge(self) -> None:
        for m in self.modules():
            if isinstance(m, LoRALinear):
                m.merge()


def padded(captions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the right into one (batch, longest) tensor, with its attention mask
    (1 for tokens, 0 for padding), as `SentenceEncoder.forward` takes them."""
    ids = torch.zeros(len(captions), max(map(len, captions)), dtype=torch.long)
    att = torch.zeros_like(ids)
    for row, caption in enumerate(captions):
        ids[row, : len(caption)] = torch.tensor(caption)
        att[row, : len(caption)] = 1
    return ids, att


def _relative_buckets(t: int, buckets: int, device: torch.device, max_distance: int = 128):
    """MPNet's (T5's) bucketing of key-minus-query offsets: exact up to buckets/4 apart, then
    logarithmic up to `max_distance`; the sign picks one half of the buckets."""
    pos = torch.arange(t, device=device)
    n = -(pos[None, :] - pos[:, None])
    half = buckets // 2
    out = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    far = exact + (
        torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
    ).long()
    return out + torch.where(n < exact, n, far.clamp(max=half - 1))
