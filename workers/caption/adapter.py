"""The caption sarcasm models v3 and v2 at inference: a sentence encoder (v3: all-mpnet-base-v2,
v2: all-MiniLM-L6-v2) + a fine-tuned adapter + a head.

The file is one `.safetensors` (no pickle) holding only what fine-tuning changed: low-rank
adapters, LayerNorms, the linear head; the header metadata (JSON) names the base weights by
name and sha256, the Platt calibration and the documented validation figures. The base weights
come from the packaged offline copies (workers/caption/encoder/files.py).

Each caption is encoded alone, unpadded: its score depends on nothing but its own text (a padded
batch would change the last float digits with the batch's longest caption).

    p(ironic) = sigmoid(platt_a · (head · meanpool(encoder(text))) + platt_c)

A file may also carry a stance head (workers/caption/stance.py), which reads the mean-pooled
states of the same forward pass (at the layer it names), so irony and stance cost one pass.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import emoji
import numpy as np
import torch

from workers.caption import ADAPTER_FORMAT as FORMAT
from workers.caption.calibrated import CalibratedScorer, validation_key
from workers.caption.encoder.files import (
    WEIGHTS,
    EncoderBase,
    FileTensors,
    base_dir,
    base_named,
    load_tokenizer,
    mapped_tensors,
    weights_sha256,
)
from workers.caption.encoder.network import SentenceEncoder, embedding_tables
from workers.caption.features import normalise
from workers.caption.stance import HEADER as STANCE_HEADER
from workers.caption.stance import StanceHead
from workers.domain import Stance
from workers.errors import ConfigError
from workers.hashing import file_sha256

log = logging.getLogger("backfire.caption")

_UNDERSCORE = re.compile(r"_+")
#: Inference precisions, with the suffix each adds to the model id.
PRECISIONS = {"float32": "", "bfloat16": "-bf16", "int8": "-int8"}
#: Tensor-name prefix of the int8 activation ranges in a model file.
INT8_RANGE = "int8_range."
#: Distinct captions remembered per loaded model (a few MB of floats and keys).
CACHE_SIZE = 50_000


def encoder_text(text: str) -> str:
    """A caption as the encoder reads it: the linear model's normalisation (no RT prefix, URL and
    mention placeholders, whitespace collapsed so the SemEval double-space artefact is invisible,
    lower case) with emoji spelt out, since neither encoder's vocabulary has emoji ("😂" would be
    [UNK]; " face with tears of joy " carries the laugh)."""
    norm = normalise(text)
    spelt = emoji.demojize(norm, delimiters=(" ", " "))
    return " ".join(_UNDERSCORE.sub(" ", unicodedata.normalize("NFKC", spelt)).split())


@dataclass
class AdapterConfig:
    rank: int = 8
    alpha: float = 16.0
    max_tokens: int = 128
    frozen_layers: int = 0  # bottom layers without adapters (files before it had none)


@dataclass
class AdapterSarcasmModel(CalibratedScorer):
    model_id: str
    base: EncoderBase
    encoder: SentenceEncoder
    head: torch.nn.Linear
    tokenizer: Any
    config: AdapterConfig
    platt_a: float
    platt_c: float
    prior: float
    base_sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Per linear layer, the input ranges int8 inference smooths with
    #: (workers/caption/encoder/quantize.py); measured on training captions. Empty in files made
    #: before int8 existed.
    int8_ranges: dict[str, torch.Tensor] = field(default_factory=dict)
    #: What the layers run in (see `use_precision`); trained and loaded models start in float32.
    precision: str = "float32"
    #: p(critical/supportive/neutral) toward the police from the same pass; None = no stance.
    stance_head: StanceHead | None = None

    def __post_init__(self) -> None:
        # Hashtag feeds repeat captions (reposts, "#myNYPD" alone): a caption already read is not
        # encoded again. Keyed by the text the encoder reads, so "RT @x: hi" and "hi" share.
        self._read = lru_cache(maxsize=CACHE_SIZE)(self._encode)

    # --- scoring -------------------------------------------------------------------------------
    def _encode(self, text: str) -> tuple[float, Stance | None]:
        """The irony head's raw score and, with a stance head, the stance: one forward pass."""
        depth = self.encoder.shape.layers
        stance = self.stance_head
        depths = (depth,) if stance is None else (depth, stance.layer)
        with torch.inference_mode():
            x = torch.tensor([self.tokenizer.encode(text).ids])
            pooled = self.encoder.pooled_at(x, torch.ones_like(x), depths)
            logit = float(self.head(pooled[0])[0, 0])
        return logit, (None if stance is None else stance.stance(pooled[1][0].numpy()))

    def clear_cache(self) -> None:
        """Forget the captions already read (benchmarks measure the uncached cost)."""
        self._read.cache_clear()

    def logits(self, texts: list[str]) -> list[float]:
        """Raw head scores, one caption at a time (see the module docstring for why). Thread-safe:
        the encoder is in eval mode from load on and inference never writes to it."""
        return [self._read(encoder_text(t))[0] for t in texts]

    def raw_score(self, text: str, _vader: dict[str, float] | None) -> float:
        return self.logits([text])[0]

    def stance_of(self, text: str) -> Stance | None:
        return self._read(encoder_text(text))[1]

    def pooled(self, texts: list[str], depth: int) -> np.ndarray:
        """Mean-pooled states after `depth` layers, one caption at a time (as scoring reads
        them): what a stance head is fitted on."""
        rows = []
        with torch.inference_mode():
            for t in texts:
                x = torch.tensor([self.tokenizer.encode(encoder_text(t)).ids])
                rows.append(self.encoder.pooled_at(x, torch.ones_like(x), (depth,))[0][0].numpy())
        return np.stack(rows)

    # --- storage -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"adapter.{k}": _stored(k, v) for k, v in self.encoder.adapter_state().items()}
        tensors["head.weight"] = self.head.weight.detach().contiguous()
        tensors["head.bias"] = self.head.bias.detach().contiguous()
        for name, r in self.int8_ranges.items():  # float16: ranges need no more precision
            tensors[f"{INT8_RANGE}{name}"] = r.to(torch.float16).contiguous()
        if self.stance_head is not None:
            tensors |= {k: torch.from_numpy(v) for k, v in self.stance_head.tensors().items()}
        meta = {
            "format": FORMAT,
            "model_id": self.model_id,
            "base": json.dumps({"name": self.base.name, "sha256": self.base_sha256}),
            "config": json.dumps(self.config.__dict__),
            "scalars": json.dumps(
                {"platt_a": self.platt_a, "platt_c": self.platt_c, "prior": self.prior}
            ),
            "info": json.dumps(self.metadata, ensure_ascii=False, sort_keys=True),
        }
        if self.stance_head is not None:
            meta[STANCE_HEADER] = self.stance_head.header()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(
        cls, path: Path, encoder_dir: Path | None = None, cache_dir: Path | None = None,
        precision: str = "float32", packed_dir: Path | None = None,
    ) -> AdapterSarcasmModel:
        """`packed_dir`: where the int8 encoder is kept as built, so later loads skip building
        it (workers/caption/encoder/packed.py); None: built each time.

        `precision` "bfloat16" runs the merged layers in bfloat16 (faster where the CPU has
        bfloat16 units, half the memory), "int8" in smoothed int8
        (workers/caption/encoder/quantize.py: v3 2.8-3.9x faster on one core, a quarter of the
        memory); the model id then ends in "-bf16" / "-int8", so their verdicts are never mixed
        with float32 ones."""
        from safetensors import safe_open

        if precision not in PRECISIONS:  # before the costly part
            raise ConfigError(f"caption precision must be one of {', '.join(PRECISIONS)}, "
                              f"not {precision!r}")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"caption model file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # a corrupt or foreign file: say which and why
            raise ConfigError(f"cannot read caption model {path}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a {FORMAT} file (format={meta.get('format')!r})")
        recorded = json.loads(meta["base"])
        base = base_named(recorded["name"])
        folder = base_dir(base, encoder_dir, cache_dir)
        sha = weights_sha256(folder)
        if sha != recorded["sha256"]:
            raise ConfigError(
                f"{path} was trained on other base weights than {folder / WEIGHTS} "
                f"(sha256 {recorded['sha256'][:12]}…, found {sha[:12]}…): use the packaged "
                f"copy of {base.name} (`{base.install}`) or retrain the adapter"
            )
        cfg = AdapterConfig(**json.loads(meta["config"]))
        ranges = {k[len(INT8_RANGE):]: v for k, v in tensors.items() if k.startswith(INT8_RANGE)}
        if precision == "int8" and not ranges:
            raise ConfigError(f"{path} carries no int8 activation ranges (made before int8 "
                              "inference existed): retrain it, or use float32")
        packed: Path | None = None
        encoder: SentenceEncoder | None = None
        if precision == "int8" and packed_dir is not None:
            # A start from the cache never builds the float layers (encoder/packed.py).
            from workers.caption.encoder.packed import load_packed, packed_file

            packed = packed_file(Path(packed_dir), file_sha256(path), sha)
            encoder = load_packed(packed, folder, base, cfg.rank, cfg.alpha, cfg.frozen_layers,
                                  meta["model_id"] + PRECISIONS["int8"])
        from_cache = encoder is not None
        if encoder is None:
            encoder = build_encoder(folder, base, cfg, dropout=0.0)
            adapter = {k[len("adapter."):]: v for k, v in tensors.items()
                       if k.startswith("adapter.")}  # fmt: skip
            try:
                encoder.load_adapter(adapter)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
            encoder.merge()
            encoder.eval().requires_grad_(False)
        head = torch.nn.Linear(encoder.shape.hidden, 1)
        with torch.no_grad():
            head.weight.copy_(tensors["head.weight"])
            head.bias.copy_(tensors["head.bias"])
        head.requires_grad_(False)
        scalars = json.loads(meta["scalars"])
        stance_head = None
        if STANCE_HEADER in meta:
            try:
                stance_head = StanceHead.from_stored(
                    {k: v.numpy() for k, v in tensors.items()}, meta[STANCE_HEADER])
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"{path}: unreadable stance head: {exc}") from exc
            if not 1 <= stance_head.layer <= encoder.shape.layers:
                raise ConfigError(f"{path}: stance head reads layer {stance_head.layer}, the "
                                  f"encoder has {encoder.shape.layers}")
        model = cls(
            model_id=meta["model_id"],
            base=base,
            encoder=encoder,
            head=head,
            tokenizer=load_tokenizer(folder, cfg.max_tokens),
            config=cfg,
            platt_a=float(scalars["platt_a"]),
            platt_c=float(scalars["platt_c"]),
            prior=float(scalars["prior"]),
            base_sha256=sha,
            metadata=json.loads(meta.get("info", "{}")),
            int8_ranges=ranges,
            stance_head=stance_head,
        )
        if from_cache:
            model._mark_precision(precision)
            return model
        try:
            model.use_precision(precision)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if packed is not None:
            from workers.caption.encoder.packed import save_packed

            try:
                save_packed(model.encoder, packed, model.model_id)
            except OSError as e:  # a read-only cache costs the next start seconds, not this run
                log.warning("Could not cache the int8 caption encoder in %s: %s",
                            packed.parent, e)
        return model

    def documented_validation(self) -> dict[str, Any] | None:
        """The validation figures stored at training time for the precision this model runs in
        (None when there are none, e.g. bfloat16)."""
        return self.metadata.get(validation_key(self.precision))

    def use_precision(self, precision: str) -> None:
        """Switch the float32 model as loaded or trained to `precision` (in place, once)."""
        if precision == "float32":
            return
        if self.precision != "float32":
            raise ValueError(f"{self.model_id} already runs in {self.precision}")
        if precision == "bfloat16":
            self.encoder.use_compute_dtype(torch.bfloat16)
        elif precision == "int8":
            from workers.caption.encoder.quantize import quantize_int8

            quantize_int8(self.encoder, self.int8_ranges)
        else:
            raise ValueError(f"unknown precision {precision!r}")
        self._mark_precision(precision)

    def _mark_precision(self, precision: str) -> None:
        """Record that the layers now run in `precision` (its model id, no cached captions)."""
        self.model_id += PRECISIONS[precision]
        self.precision = precision
        self.clear_cache()


def base_folder(
    path: Path, encoder_dir: Path | None = None, cache_dir: Path | None = None
) -> Path | None:
    """The real folder of the base weights an adapter file names (unpacked if need be); None
    when the header cannot say, and `AdapterSarcasmModel.load` then reports what is wrong."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            name = json.loads((f.metadata() or {})["base"])["name"]
    except Exception:
        return None
    return base_dir(base_named(name), encoder_dir, cache_dir).resolve()


def _stored(name: str, t: torch.Tensor) -> torch.Tensor:
    """The low-rank factors are kept as float16 (half the file; v3's would be 5.5 MB in float32),
    LayerNorms as float32: their fine-tuned changes are smaller than float16's step near 1."""
    return (t.half() if "lora_" in name else t).contiguous()


def round_to_stored(encoder: SentenceEncoder) -> None:
    """Make the in-memory adapter exactly what `save` writes, so that figures measured on a
    freshly trained model are the figures of its file."""
    encoder.load_adapter({k: _stored(k, v) for k, v in encoder.adapter_state().items()})


def build_encoder(
    folder: Path, base: EncoderBase, cfg: AdapterConfig, dropout: float
) -> SentenceEncoder:
    """`base`'s encoder with fresh adapters, over the weights in `folder`."""
    encoder = SentenceEncoder(base.shape, rank=cfg.rank, alpha=cfg.alpha, dropout=dropout,
                              frozen_layers=cfg.frozen_layers)
    tables = set(embedding_tables(base.shape))
    try:
        # The frozen embedding tables stay views of the file (see SentenceEncoder.load_base);
        # the rest is read tensor by tensor as it is copied in.
        encoder.load_base(FileTensors(folder / WEIGHTS, mapped_tensors(folder / WEIGHTS, tables)))
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{folder / WEIGHTS} is not a {base.name} checkpoint: {exc}") from exc
    return encoder
