"""`backfire caption ...`: train and evaluate the caption sarcasm model.

scikit-learn is imported only by `train`; torch only when an adapter (v2/v3) model is trained or
scored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from workers.cli.common import EXIT_USAGE, err, settings_with

if TYPE_CHECKING:  # the CLI imports its models (and torch) only in the commands that need them
    from workers.caption.adapter import AdapterSarcasmModel
    from workers.caption.linear import SarcasmModel

app = typer.Typer(
    help="The caption sarcasm model: try it on captions, measure it, retrain it on your own.",
    no_args_is_help=True,
)
out = Console(highlight=False)

DataOpt = Annotated[
    Path,
    typer.Option(
        "--data",
        exists=True,
        help="TweetEval folder ({split}_text.txt + {split}_labels.txt), a folder of {split}.csv, "
        "or one CSV file with columns text,label (label 1 = sarcastic/ironic).",
    ),
]


def _print_figures(title: str, fig) -> None:
    (tn, fp), (fn, tp) = fig.confusion
    out.print(f"[bold]{title}[/] ({fig.n} captions, decision at p >= 0.5)")
    out.print(f"  ironic-class F1  {fig.ironic_f1:.4f}")
    out.print(f"  macro-F1         {fig.macro_f1:.4f}")
    out.print(f"  accuracy         {fig.accuracy:.4f}")
    out.print(f"  ECE (10 bins)    {fig.ece:.4f}")
    out.print("  confusion        pred 0  pred 1")
    out.print(f"    true 0         {tn:6d}  {fp:6d}")
    out.print(f"    true 1         {fn:6d}  {tp:6d}")


EncoderDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--encoder-dir",
        envvar="BACKFIRE_CAPTION_ENCODER_DIR",
        help="Folder with the base encoder's model.safetensors + tokenizer.json (default: the "
        "packaged copy: all-mpnet-base-v2 for v3, all-MiniLM-L6-v2 for v2).",
    ),
]


@app.command()
def train(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Model file to write (.safetensors).")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="adapter: fine-tune a sentence encoder (the shipped kind; see --base); "
            "linear: TF-IDF + logistic regression (v1, ~10 s, fastest to score, least accurate).",
        ),
    ] = "adapter",
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="adapter: mpnet (v3, all-mpnet-base-v2, the shipped default, ~10-15 min a member "
            "on 2 cores) or minilm (v2, all-MiniLM-L6-v2, ~1.5 min a member, 6x faster to score).",
        ),
    ] = "mpnet",
    seed: Annotated[int, typer.Option("--seed", help="Seed of splits, init and order.")] = 13,
    epochs: Annotated[int, typer.Option("--epochs", help="adapter: passes over the data.")] = 3,
    lr: Annotated[
        float, typer.Option("--lr", help="adapter: learning rate of the adapters (AdamW).")
    ] = 1e-3,
    members: Annotated[
        int | None,
        typer.Option("--members", help="adapter: fine-tunes averaged into one (soup); default "
                     "1 for mpnet, 3 for minilm."),
    ] = None,
    frozen_layers: Annotated[
        int,
        typer.Option("--frozen-layers", help="adapter: bottom layers left as the base has them "
                     "(no adapters; their outputs computed once). 6 trains v3 1.5x "
                     "faster with the same validation figures (model card)."),
    ] = 0,
    encoder_dir: EncoderDirOpt = None,
    c: Annotated[float, typer.Option("--c", help="linear: inverse L2 strength.")] = 1.0,
    dense_weight: Annotated[
        float, typer.Option("--dense-weight", help="linear: weight of the affective features.")
    ] = 0.0,
    task: Annotated[
        str, typer.Option("--task", help="irony (the sarcasm model) or stance (a stance head "
                          "over an existing adapter model: see --from).")
    ] = "irony",
    from_file: Annotated[
        Path | None,
        typer.Option("--from", exists=True, dir_okay=False, help="stance: the adapter model "
                     "whose encoder and irony head the new file keeps (default the shipped v3)."),
    ] = None,
    layer: Annotated[
        int, typer.Option("--layer", help="stance: encoder layer whose pooled states the head "
                          "reads (1..12 for v3, 0 = the last; the shipped head reads 11).")
    ] = 11,
    anchors: Annotated[
        Path | None,
        typer.Option("--anchors", exists=True, dir_okay=False, help="stance: anchor captions "
                     "YAML (default model_cards/caption-stance-anchors.yaml)."),
    ] = None,
) -> None:
    """Train a sarcasm model on the `train` split; report the `val` split when there is one.
    With --task stance: fit the stance head over an adapter model's encoder (--from, default the
    shipped v3) on stance data; the irony head is kept as it is.

    Example:

        backfire caption train --data ../shared/data/irony --out my-sarcasm.safetensors
        backfire caption train --task stance --data ../shared/data/police-stance --out my.st

    Then use it with BACKFIRE_CAPTION_MODEL_FILE=path/to/file.safetensors.
    """
    from workers.caption.training.data import has_split, load_split

    if task == "stance":
        _train_stance(data, out_file, from_file, layer, anchors, encoder_dir)
        return
    if task != "irony":
        err.print(f"[bold red]error[/]: --task must be irony or stance, not {task!r}")
        raise typer.Exit(EXIT_USAGE)

    if kind not in ("adapter", "linear"):
        err.print(f"[bold red]error[/]: --kind must be adapter or linear, not {kind!r}")
        raise typer.Exit(EXIT_USAGE)
    from workers.caption.encoder.files import BASES

    if base not in BASES:
        err.print(f"[bold red]error[/]: --base must be one of {', '.join(BASES)}, not {base!r}")
        raise typer.Exit(EXIT_USAGE)
    members = members if members is not None else (1 if base == "mpnet" else 3)
    if epochs < 1 or members < 1 or not lr > 0:
        err.print("[bold red]error[/]: --epochs and --members must be at least 1, --lr above 0")
        raise typer.Exit(EXIT_USAGE)
    progress = lambda m: err.print(f"[dim]{m}[/]")  # noqa: E731
    model: AdapterSarcasmModel | SarcasmModel
    try:
        train_set = load_split(data, "train")
        val_set = load_split(data, "val") if data.is_dir() and has_split(data, "val") else None
        if kind == "adapter":
            from workers.caption.training.adapter import AdapterTrainConfig, train_adapter

            cfg = AdapterTrainConfig(epochs=epochs, members=members, seed=seed, base=base, lr=lr,
                                     frozen_layers=frozen_layers)
            model = train_adapter(train_set, cfg, val_set, encoder_dir, progress=progress,
                                  cache_dir=settings_with().cache_dir)
        else:
            from workers.caption.training.linear import TrainConfig
            from workers.caption.training.linear import train as fit

            model = fit(train_set, TrainConfig(c=c, dense_weight=dense_weight, seed=seed),
                        val_set, progress=progress)
    except ValueError as e:  # what the trainers refuse (too few captions of a class...)
        err.print(f"[bold red]error[/]: {e}")
        raise typer.Exit(EXIT_USAGE) from e
    model.save(out_file)
    size_mb = out_file.stat().st_size / 1e6
    out.print(f"wrote {out_file} ({size_mb:.1f} MB), model id {model.model_id}")
    if val_set is not None:
        from workers.caption.calibrated import VALIDATED_PRECISIONS, validation_key
        from workers.caption.training.metrics import EvalFigures

        for precision in VALIDATED_PRECISIONS:
            key = validation_key(precision)
            title = "validation" if precision == "float32" else f"validation, {precision}"
            if key in model.metadata:
                v = dict(model.metadata[key])
                v.pop("source")
                v["confusion"] = tuple(tuple(r) for r in v["confusion"])
                _print_figures(title, EvalFigures(**v))


ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        envvar="BACKFIRE_CAPTION_MODEL_FILE",
        help="Model file; default the shipped model.",
    ),
]


PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="Adapter models: int8 (the default: fastest, same validation figures), float32, or "
        "bfloat16 (fast only on CPUs with AMX/AVX512-BF16). Default BACKFIRE_CAPTION_PRECISION.",
    ),
]


def _load(model_file: Path | None, encoder_dir: Path | None, precision: str | None):
    from workers.caption import SHIPPED_MODEL_FILE, load_model_file

    settings = settings_with(caption_precision=precision)  # load_model_file checks the value
    return load_model_file(model_file or SHIPPED_MODEL_FILE, encoder_dir, settings.cache_dir,
                           settings.caption_precision)


@app.command("score")
def score_cmd(
    captions: Annotated[list[str], typer.Argument(help="One or more captions to score.")],
    model_file: ModelOpt = None,
    encoder_dir: EncoderDirOpt = None,
    precision: PrecisionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per caption.")] = False,
) -> None:
    """Score captions from the command line: stance toward the police (with a stance head, as
    the shipped model has), irony probability, sentiment, cues.

    Example:

        backfire caption score "Free delivery, only at #myNYPD" "Thanks for keeping us safe"
    """
    model = _load(model_file, encoder_dir, precision)
    for text, s in zip(captions, model.score_batch(captions), strict=True):
        # Plain echo, not rich: one line per caption, never wrapped, easy to pipe.
        if as_json:
            typer.echo(json.dumps({"caption": text, **s.as_dict()}, ensure_ascii=False))
            continue
        cues = f"  cues: {', '.join(s.cues)}" if s.cues else ""
        stance = ""
        if s.stance is not None:
            st = s.stance
            stance = (f"stance {st.label} {getattr(st, st.label):.2f} (critical {st.critical:.2f}"
                      f" supportive {st.supportive:.2f} neutral {st.neutral:.2f})  ")
        typer.echo(f"{stance}sarcasm {s.sarcasm:.2f}  sentiment {s.sentiment:+.2f}  "
                   f"{text!r}{cues}")


TaskOpt = Annotated[
    str,
    typer.Option("--task", help="irony: the sarcasm head on irony data (0/1 labels); stance: the "
                 "stance head on stance data (critical/supportive/neutral labels)."),
]


@app.command("eval")
def evaluate_cmd(
    data: Annotated[
        Path,
        typer.Option("--data", exists=True, help="irony: as for train. stance: the police-stance "
                     "folder (stance.tsv) or a .tsv/.csv file with columns text (or text_no_tags) "
                     "and label (critical/supportive/neutral), optional label_source."),
    ],
    model_file: ModelOpt = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="irony: which split of --data to score (default val). "
                     "stance: all (default), or heldout: the rows the shipped stance head was not "
                     "fitted on (human-labelled half + other events)."),
    ] = None,
    task: TaskOpt = "irony",
    encoder_dir: EncoderDirOpt = None,
    precision: PrecisionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Score labelled captions: irony (ironic-class F1, macro-F1, accuracy, confusion, ECE) or
    stance (ROC-AUC critical vs supportive, macro-F1, confusion; human and hashtag rows apart).

    Example:

        backfire caption eval --data ../shared/data/irony --split val
        backfire caption eval --data ../shared/data/police-stance --task stance --split heldout
    """
    from workers.caption.training.data import load_split
    from workers.caption.training.metrics import evaluate

    if task not in ("irony", "stance"):
        err.print(f"[bold red]error[/]: --task must be irony or stance, not {task!r}")
        raise typer.Exit(EXIT_USAGE)
    if task == "stance":
        _eval_stance(data, model_file, split or "all", encoder_dir, precision, as_json)
        return
    split = split or "val"
    items = load_split(data, split)
    model = _load(model_file, encoder_dir, precision)
    fig = evaluate(items.labels, [s.sarcasm for s in model.score_batch(items.texts)])
    if as_json:
        out.print_json(json.dumps({"model": model.model_id, "split": split, **fig.as_dict()}))
        return
    out.print(f"model {model.model_id}")
    _print_figures(f"{split} split of {data}", fig)
    documented = getattr(model, "documented_validation", lambda: None)()  # none for cues-v0
    if documented and split == "val":
        out.print(
            f"  documented in the model file: ironic-F1 {documented['ironic_f1']:.4f}, "
            f"macro-F1 {documented['macro_f1']:.4f}, accuracy {documented['accuracy']:.4f}, "
            f"ECE {documented['ece']:.4f}"
        )


def _eval_stance(data: Path, model_file: Path | None, split: str, encoder_dir: Path | None,
                 precision: str | None, as_json: bool) -> None:
    import numpy as np

    from workers.caption.training.stance_data import load_stance, parts, stance_figures

    if split not in ("all", "heldout"):
        err.print(f"[bold red]error[/]: --split for stance must be all or heldout, not {split!r}")
        raise typer.Exit(EXIT_USAGE)
    rows = load_stance(data)
    model = _load(model_file, encoder_dir, precision)
    scores = model.score_batch(rows.texts)
    if all(s.stance is None for s in scores):
        err.print(f"[bold red]error[/]: {model.model_id} has no stance head (the shipped v3 "
                  "file has one; add one with `backfire caption train --task stance`)")
        raise typer.Exit(EXIT_USAGE)
    # A caption the model could not read (empty, non-Latin) has no stance: neutral.
    probs = np.array([[s.stance.critical, s.stance.supportive, s.stance.neutral]
                      if s.stance is not None else [0.0, 0.0, 1.0] for s in scores])
    y = rows.y()
    src = np.array(rows.label_sources)
    groups: dict[str, np.ndarray] = {}
    if split == "heldout":
        masks = parts(rows)
        groups = {"human-labelled, held-out half": masks["human"],
                  "hashtag-labelled, other events": masks["events"]}
    else:
        for name in sorted(set(rows.label_sources)):
            groups[f"{name}-labelled rows" if name != "given" else "rows"] = src == name
        if len(groups) > 1:
            groups["all rows"] = np.ones(len(rows), dtype=bool)
    figures = {name: stance_figures(y[m], probs[m]) for name, m in groups.items() if m.any()}
    documented = getattr(model, "stance_head", None)
    if as_json:
        out.print_json(json.dumps({"model": model.model_id, "split": split,
                                   **{k: f.as_dict() for k, f in figures.items()}}))
        return
    out.print(f"model {model.model_id}")
    for name, f in figures.items():
        out.print(f"[bold]{name}[/] ({f.n} captions: " +
                  ", ".join(f"{k} {v}" for k, v in f.counts.items()) + ")")
        out.print(f"  ROC-AUC critical vs supportive  {f.auc:.4f}")
        out.print(f"  macro-F1 (classes present)      {f.macro_f1:.4f}")
        out.print(f"  accuracy                        {f.accuracy:.4f}")
        out.print("  confusion (rows true, columns predicted: critical supportive neutral)")
        for label, row in zip(("critical", "supportive", "neutral"), f.confusion, strict=True):
            out.print(f"    {label:<11} {row[0]:6d} {row[1]:6d} {row[2]:6d}")
    if documented is not None and split == "heldout":
        key = "heldout" if getattr(model, "precision", "float32") == "float32" else \
            f"heldout_{model.precision}"
        doc = documented.info.get(key, {})
        for part, name in (("human", "human-labelled"), ("events", "other events")):
            if part in doc:
                out.print(f"  documented in the model file, {name}: ROC-AUC {doc[part]['auc']:.4f}"
                          f", macro-F1 {doc[part]['macro_f1']:.4f}")


def _train_stance(data: Path, out_file: Path, from_file: Path | None, layer: int,
                  anchors: Path | None, encoder_dir: Path | None) -> None:
    from workers.caption import ADAPTER_FORMAT, SHIPPED_MODEL_FILE, file_format
    from workers.caption.adapter import AdapterSarcasmModel
    from workers.caption.training.stance import ANCHORS_FILE, StanceTrainConfig, train_stance_head
    from workers.caption.training.stance_data import load_stance

    source = from_file or SHIPPED_MODEL_FILE
    if file_format(source) != ADAPTER_FORMAT:
        err.print(f"[bold red]error[/]: --from {source} is not an adapter (v2/v3) model file: a "
                  "stance head reads an encoder's pooled states")
        raise typer.Exit(EXIT_USAGE)
    rows = load_stance(data)
    base = AdapterSarcasmModel.load(source, encoder_dir, settings_with().cache_dir)
    try:
        model = train_stance_head(base, rows, StanceTrainConfig(layer=layer),
                                  anchors or ANCHORS_FILE,
                                  progress=lambda m: err.print(f"[dim]{m}[/]"))
    except ValueError as e:
        err.print(f"[bold red]error[/]: {e}")
        raise typer.Exit(EXIT_USAGE) from e
    model.save(out_file)
    out.print(f"wrote {out_file} ({out_file.stat().st_size / 1e6:.1f} MB), model id "
              f"{model.model_id}")
    head = model.stance_head
    assert head is not None
    for key in ("heldout", "heldout_int8"):
        for part, fig in head.info.get(key, {}).items():
            out.print(f"  {key:<13} {part:<7} n {fig['n']:4d}  ROC-AUC {fig['auc']:.4f}  "
                      f"macro-F1 {fig['macro_f1']:.4f}")
