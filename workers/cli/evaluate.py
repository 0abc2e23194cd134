"""`backfire eval`, `backfire calibrate` and `backfire scenes fit`: how right the scene model
and the verdicts are on a user's own labelled posts, and fixing the scenes from them.

All three read labelled posts (a CSV/JSONL manifest with label columns, or the labels given
through the API with `--from-store`), get each image's embedding through the pipeline's decoder
and encoder with the on-disk embedding cache (a second run costs no model time), and work from
there. The command bodies (`run_eval`, `run_calibrate`, `run_fit`) take an optional encoder:
tests plug a fake one in at that seam.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from workers.cli.common import (
    BatchSize,
    Checkpoint,
    ImagePrecision,
    ModelConfig,
    ModelName,
    Pretrained,
    allow_private,
    err,
    settings_with,
)
from workers.config import Settings
from workers.errors import UsageError

if TYPE_CHECKING:
    from workers.evaluation.collect import Collected
    from workers.evaluation.labels import LabelledPost, LabelledSet
    from workers.scenes.embeddings import Embedder
    from workers.scenes.encoder import ImageTextEncoder
    from workers.scoring.pipeline import Pipeline

Labelled = Annotated[
    Path | None,
    typer.Argument(help="Labelled posts: CSV/JSONL as `backfire score` reads, plus label "
                        "columns scenes (arrest;restraint or none), verdict, ironic (0/1)."),
]  # fmt: skip
FromStore = Annotated[
    bool, typer.Option("--from-store", help="Use the labels given through the API instead.")
]
Hashtag = Annotated[
    str | None, typer.Option("--hashtag", help="With --from-store: this hashtag's posts.")
]
SkipBad = Annotated[
    bool,
    typer.Option("--skip-bad", help="Leave out (and count) rows with unreadable labels "
                                    "instead of stopping."),
]  # fmt: skip
AsJson = Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")]
ScenesFile = Annotated[
    Path | None,
    typer.Option("--scenes-file", envvar="BACKFIRE_SCENES_FILE",
                 help="Scene prompts and thresholds to evaluate or start from."),
]  # fmt: skip
NoCache = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the image-embedding and "
                              "caption-score caches.")
]

#: What `--compare-precision` accepts (Settings.image_precision's values; a CLI value laid over
#: the settings skips their validation, so it is checked here, before any model loads).
IMAGE_PRECISIONS = ("float32", "int8")


@dataclass(frozen=True)
class Source:
    """Where the labelled posts come from."""

    path: Path | None
    from_store: bool = False
    hashtag: str | None = None
    skip_bad: bool = False
    use_cache: bool = True


#: The model and fetch options the commands below share: parameter name → Settings field.
_SETTINGS_OPTIONS = {
    "batch_size": "batch_size", "checkpoint": "checkpoint", "model_name": "model_name",
    "pretrained": "pretrained", "model_config": "model_config_file",
    "scenes_file": "scenes_file", "image_precision": "image_precision",
    "allow_private_network": "allow_private_network",
}  # fmt: skip


def _start(params: dict[str, Any]) -> tuple[Settings, Source]:
    """The settings with the options that were given laid on, and where the labelled posts
    come from, from a command's parameters (its `locals()`). Typer needs every option in each
    command's signature; what the options mean is said once, here. A command without an
    option (fit fetches nothing, so has no --allow-private-network) leaves its setting as is."""
    given = {field: params.get(name) for name, field in _SETTINGS_OPTIONS.items()}
    given["allow_private_network"] = given["allow_private_network"] or None  # off: not given
    src = Source(params["labelled"], params["from_store"], params["hashtag"],
                 params["skip_bad"], not params["no_cache"])  # fmt: skip
    return settings_with(**given), src


# --- shared steps ---------------------------------------------------------------------------
def read_source(settings: Settings, src: Source, known: list[str]) -> LabelledSet:
    from workers.evaluation.labels import read_labelled

    if src.from_store:
        if src.path is not None:
            raise UsageError("Give a labelled file or --from-store, not both.")
        from workers.evaluation.store import labelled_from_store

        return labelled_from_store(settings, known, src.hashtag, skip_bad=src.skip_bad)
    if src.path is None:
        raise UsageError("Give a labelled CSV/JSONL file, or --from-store [--hashtag TAG].")
    return read_labelled(src.path, known, hashtag=src.hashtag, skip_bad=src.skip_bad)


def _reader(settings: Settings) -> Any:
    from workers.media.source import read_media
    from workers.net.guard import FetchPolicy
    from workers.store.blobs import BlobStore

    policy = FetchPolicy.from_settings(settings)
    blobs = BlobStore(settings.resolved_media_dir)

    def read(lp: LabelledPost) -> bytes:
        if lp.media_sha256:
            return blobs.get(lp.media_sha256)
        return read_media(lp.post.image, policy)

    return read


def _cache(settings: Settings, model_id: str, use: bool) -> Any:
    if not use:
        return None
    from workers.scenes.embeddings import EmbeddingCache

    return EmbeddingCache(settings.cache_dir, model_id)


def _cached_captions(settings: Settings, pipeline: Pipeline, use: bool) -> Any:
    """Lay the on-disk caption-score cache over the pipeline's caption model (a second eval of
    the same posts then asks that model nothing); None with --no-cache."""
    if not use:
        return None
    from workers.caption.cache import CachedCaptionScorer, CaptionScoreCache

    model = pipeline.caption_scorer
    cached = CachedCaptionScorer(model, CaptionScoreCache(settings.cache_dir, model.model_id))
    pipeline.caption_scorer = cached
    return cached


def _collect(
    settings: Settings, labelled: LabelledSet, embedder: Embedder, console: Console
) -> Collected:
    from workers.evaluation.collect import collect

    if not labelled.posts:
        raise UsageError(
            f"No labelled post in {labelled.source} ({labelled.unlabelled} rows without any "
            f"label, {len(labelled.skipped)} skipped)."
        )
    with console.status(f"Embedding {len(labelled.posts)} labelled photos…", spinner="dots"):
        collected = collect(labelled, embedder, _reader(settings), settings.loader_threads)
    s = embedder.stats
    console.print(
        f"{len(labelled.posts)} labelled posts ({labelled.unlabelled} unlabelled and "
        f"{len(labelled.skipped)} unreadable rows left out); {s.images} images: "
        f"{s.from_cache} from the embedding cache, {s.encoded} encoded in {s.model_s:.1f} s of "
        f"model time, {len(collected.failed)} posts failed",
        soft_wrap=True,
    )
    for lp, e in collected.failed[:5]:
        console.print(f"  [yellow]failed[/] {lp.location}: {e.get('message')}", soft_wrap=True)
    return collected


def _encoder(settings: Settings, encoder: ImageTextEncoder | None) -> ImageTextEncoder:
    if encoder is not None:
        return encoder
    from workers.scenes.encoder import ClipEncoder

    return ClipEncoder(settings)


def _standalone_embedder(
    settings: Settings, encoder: ImageTextEncoder, use_cache: bool
) -> Embedder:
    from workers.media.decode import DecodeLimits, decode_image
    from workers.scenes.embeddings import Embedder

    limits = DecodeLimits(max_pixels=settings.max_image_pixels, target_size=encoder.image_size)

    def prepare(data: bytes) -> Any:
        return encoder.prepare(decode_image(data, limits))

    cache = _cache(settings, encoder.model_id, use_cache)
    return Embedder(encoder, prepare, settings.batch_size, cache)


# --- eval -------------------------------------------------------------------------------------
def run_eval(
    settings: Settings, src: Source, console: Console, *, out: Path | None = None,
    as_json: bool = False, rounds: int = 200, encoder: ImageTextEncoder | None = None,
    compare_precision: str | None = None, compare_encoder: ImageTextEncoder | None = None,
) -> dict[str, Any]:  # fmt: skip
    from workers.evaluation.evaluate import evaluate
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.pipeline import Pipeline

    if compare_precision is not None and compare_precision not in IMAGE_PRECISIONS:
        raise UsageError(
            f"--compare-precision is one of {', '.join(IMAGE_PRECISIONS)}, "
            f"not {compare_precision!r}."
        )
    prompts = load_prompt_set(settings.scenes_file)
    labelled = read_source(settings, src, prompts.names)
    with console.status("Loading the models…", spinner="dots"):
        pipeline = Pipeline.from_settings(settings, encoder=encoder)
    cache = _cache(settings, pipeline.encoder.model_id, src.use_cache)
    captions = _cached_captions(settings, pipeline, src.use_cache)
    embedder = pipeline.embedder(cache)
    collected = _collect(settings, labelled, embedder, console)
    result = evaluate(labelled, collected, pipeline, rounds=rounds)
    result["timing"] = {
        "images": embedder.stats.images, "from_cache": embedder.stats.from_cache,
        "encoded": embedder.stats.encoded, "model_s": round(embedder.stats.model_s, 3),
    }  # fmt: skip
    if compare_precision is not None:
        result["precision_comparison"] = _compare_precision(
            settings, src, labelled, collected, pipeline, compare_precision, compare_encoder,
            console,
        )  # fmt: skip
    if captions is not None:
        result["timing"].update(
            captions_from_cache=captions.from_cache, captions_scored=captions.scored,
            caption_model_s=round(captions.model_s, 3),
        )  # fmt: skip
        console.print(
            f"Captions: {captions.from_cache} from the caption-score cache, {captions.scored} "
            f"scored in {captions.model_s:.1f} s of caption-model time",
            soft_wrap=True,
        )
    if out is not None:
        from workers.report.eval_page import render_eval_page

        thumbs = _thumbnails(settings, result)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_eval_page(result, thumbs), encoding="utf-8")
        console.print(f"Evaluation page → {out}")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        _print_eval(result)
        if "precision_comparison" in result:
            _print_comparison(result["precision_comparison"])
    return result


def _compare_precision(
    settings: Settings, src: Source, labelled: LabelledSet, collected: Collected,
    pipeline: Pipeline, precision: str, encoder: ImageTextEncoder | None, console: Console,
) -> dict[str, Any]:  # fmt: skip
    """The same labelled posts through the image tower at `precision` (its own embedding
    cache: the model id carries the precision), compared with the run's own."""
    from workers.evaluation.compare import compare

    other_settings = settings.model_copy(update={"image_precision": precision})
    with console.status(f"Loading the {precision} image tower…", spinner="dots"):
        other = pipeline.with_encoder(_encoder(other_settings, encoder), other_settings)
    console.print(f"Comparing with the {precision} image tower ({other.encoder.model_id}):")
    embedder = other.embedder(_cache(settings, other.encoder.model_id, src.use_cache))
    theirs = _collect(settings, labelled, embedder, console)
    return compare(collected, pipeline, settings.image_precision, theirs, other, precision)


def _thumbnails(settings: Settings, result: dict[str, Any]) -> dict[str, str | None]:
    from workers.media.decode import DecodeLimits
    from workers.net.guard import FetchPolicy
    from workers.report.images import THUMB_SIDE, ImageLoader, thumbnail_uri
    from workers.store.blobs import BlobStore

    loader = ImageLoader(
        FetchPolicy.from_settings(settings), fetch=False,
        limits=DecodeLimits.from_settings(settings, target_size=THUMB_SIDE),
        blobs=BlobStore(settings.resolved_media_dir),
    )  # fmt: skip
    from workers.domain import ResultRow

    out: dict[str, str | None] = {}
    for m in result["mistakes"]:
        pid = m["post_id"]
        if pid not in out:
            row = ResultRow(pid, "ok", image=m.get("image"), media_sha256=m.get("media_sha256"))
            img = loader.load_row(row)
            out[pid] = thumbnail_uri(img) if img is not None else None
    return out


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _print_eval(r: dict[str, Any]) -> None:
    from rich.table import Table

    out = Console(highlight=False)
    t = Table(title=f"Scenes on {r['posts']['scored']} labelled posts ({r['model_id']})")
    for col in ("scene", "pos", "AUC", "AP", "thr", "P", "R", "F1", "best thr", "best F1",
                "ECE", "F1 95% CI"):  # fmt: skip
        t.add_column(col, justify="right" if col != "scene" else "left")
    for name, s in r["scenes"].items():
        ci = (s.get("ci95") or {}).get("f1")
        t.add_row(
            name, str(s["positives"]), _fmt(s["roc_auc"]), _fmt(s["average_precision"]),
            _fmt(s["threshold"]), _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]),
            _fmt(s["best_f1_threshold"]), _fmt(s["best_f1"]), _fmt(s["ece"]),
            f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "–",
        )  # fmt: skip
    out.print(t)
    v = r.get("verdicts")
    if v:
        vt = Table(title=f"Verdicts: macro F1 {_fmt(v['macro_f1'])}, accuracy "
                         f"{_fmt(v['accuracy'])} (rows: label, columns: predicted)")  # fmt: skip
        vt.add_column("label")
        for c in v["labels"]:
            vt.add_column(c, justify="right")
        vt.add_column("F1", justify="right")
        for c, row in zip(v["labels"], v["confusion"], strict=True):
            vt.add_row(c, *map(str, row), _fmt(v["per_class"][c]["f1"]))
        out.print(vt)
    c = r.get("captions")
    if c:
        i = c["ironic"]
        out.print(
            f"Caption irony ({c['model']}): F1 {_fmt(i['f1'])} at 0.5, AUC {_fmt(i['roc_auc'])}, "
            f"ECE {_fmt(i['ece'])} on {i['labelled']} labelled captions ({i['positives']} ironic)"
        )


def _print_comparison(c: dict[str, Any]) -> None:
    from rich.table import Table

    out = Console(highlight=False)
    a, b = c["base"]["precision"], c["other"]["precision"]
    cos = c["embedding_cosine"] or {}
    out.print(
        f"Image precision {a} vs {b} on {c['posts']} posts: verdict agreement "
        f"{_fmt(c['verdict_agreement'])} ({c['verdicts_differing']} verdicts differ); "
        f"embedding cosine min {_fmt(cos.get('min'))}, mean {_fmt(cos.get('mean'))}",
        soft_wrap=True,
    )
    m = c.get("verdict_macro_f1")
    if m:
        out.print(
            f"Verdict macro F1 {a} {_fmt(m['base'])}, {b} {_fmt(m['other'])}, difference "
            f"{_fmt(m['difference'])} on {m['labelled']} labelled posts"
        )
    t = Table(title=f"Scenes, {b} − {a}")
    for col in ("scene", "pos", f"AUC {a}", f"AUC {b}", "AUC diff", "decisions agree",
                "mean |Δp|"):  # fmt: skip
        t.add_column(col, justify="right" if col != "scene" else "left")
    for name, s in c["scenes"].items():
        t.add_row(name, str(s["positives"]), _fmt(s["roc_auc"]), _fmt(s["roc_auc_other"]),
                  _fmt(s["auc_difference"]), _fmt(s["decision_agreement"]),
                  _fmt(s["mean_abs_p_difference"]))  # fmt: skip
    out.print(t)


# --- calibrate --------------------------------------------------------------------------------
def run_calibrate(
    settings: Settings, src: Source, console: Console, out: Path, *,
    target_precision: float | None = None, folds: int = 5, only: list[str] | None = None,
    as_json: bool = False, encoder: ImageTextEncoder | None = None,
) -> dict[str, Any]:  # fmt: skip
    from workers.evaluation.calibrate import calibrate_scene, calibrated_prompt_set
    from workers.evaluation.collect import scene_labels
    from workers.scenes.prompts import load_prompt_set, save_prompt_set
    from workers.scenes.scorer import SceneScorer

    if target_precision is not None and not 0 < target_precision < 1:
        raise UsageError("--target-precision must be between 0 and 1 (e.g. 0.9).")
    prompts = load_prompt_set(settings.scenes_file)
    unknown = sorted(set(only or []) - set(prompts.names))
    if unknown:
        raise UsageError(
            f"Unknown scene(s) {', '.join(unknown)}; known: {', '.join(prompts.names)}"
        )
    labelled = read_source(settings, src, prompts.names)
    with console.status("Loading the scene model…", spinner="dots"):
        enc = _encoder(settings, encoder)
        scorer = SceneScorer(enc, prompts, cache_dir=settings.cache_dir)
    embedder = _standalone_embedder(settings, enc, src.use_cache)
    collected = _collect(settings, labelled, embedder, console)
    margins = collected.margins(scorer)
    y, mask = scene_labels(collected.posts, scorer.names)
    fits = []
    for j, name in enumerate(scorer.names):
        if only and name not in only:
            continue
        rows = mask[:, j]
        fits.append(calibrate_scene(
            name, prompts.scenes[name], margins[rows, j], y[rows, j], enc.logit_scale,
            target_precision=target_precision, folds=folds,
        ))  # fmt: skip
    fitted = calibrated_prompt_set(
        prompts, fits, model_id=enc.model_id, source=labelled.source,
        samples=len(collected.posts), target_precision=target_precision,
    )  # fmt: skip
    header = (
        f"Calibrated by `backfire calibrate` from {settings.scenes_file.name} on "
        f"{len(collected.posts)} labelled posts ({labelled.source}) for the model "
        f"{enc.model_id}.\nThe fitted values and their cross-validated figures are under "
        "`calibration`; this file refuses any other model."
    )
    save_prompt_set(fitted, out, header)
    result = {
        "out": str(out), "model_id": enc.model_id, "prompt_set": fitted.hash,
        "samples": len(collected.posts),
        "scenes": {f.name: (fitted.calibration.scenes[f.name] if fitted.calibration
                            else f.provenance()) for f in fits},
    }  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print_calibration(fits, out, fitted.hash)
    return result


def _print_calibration(fits: list[Any], out: Path, version: str) -> None:
    from rich.table import Table

    con = Console(highlight=False)
    t = Table(title="Calibration (after: out-of-sample, k-fold cross-validated)")
    for col in ("scene", "pos", "method", "ECE before", "ECE after", "F1 before", "F1 after",
                "P after", "R after", "threshold"):  # fmt: skip
        t.add_column(col)
    for f in fits:
        if not f.changed:
            t.add_row(f.name, str(f.positives), "unchanged", *["–"] * 7)
            continue
        b, a = f.before, f.after
        t.add_row(
            f.name, str(f.positives), f.method, _fmt(b["ece"]), _fmt(a["ece"]), _fmt(b["f1"]),
            _fmt(a["f1"]), _fmt(a["precision"]), _fmt(a["recall"]),
            f"{_fmt(b['threshold'])} → {_fmt(a['threshold'])}",
        )  # fmt: skip
    con.print(t)
    for f in fits:
        if f.reason:
            con.print(f"  {f.name}: {f.reason}", soft_wrap=True)
    con.print(
        f"Wrote {out} (prompt set {version}). Use it with BACKFIRE_SCENES_FILE={out}: the "
        "pipeline_version changes, so its verdicts never mix with the old ones.",
        soft_wrap=True,
    )


# --- scenes fit -------------------------------------------------------------------------------
def run_fit(
    settings: Settings, scene: str, src: Source, console: Console, out: Path, *,
    group: str | None = None, prompts_text: list[str] | None = None, shots: bool = True,
    as_json: bool = False, encoder: ImageTextEncoder | None = None,
) -> dict[str, Any]:  # fmt: skip
    import numpy as np

    from workers.evaluation.collect import scene_labels
    from workers.evaluation.fewshot import fit_head, shots_table
    from workers.scenes.heads import save_head
    from workers.scenes.prompts import HeadRef, Scene, load_prompt_set, save_prompt_set
    from workers.scenes.scorer import SceneScorer

    prompts = load_prompt_set(settings.scenes_file)
    if not scene.isidentifier():
        raise UsageError(f"A scene name is a plain identifier (like kettling), not {scene!r}.")
    new = scene not in prompts.scenes
    if new and group is None:
        raise UsageError(
            f"{scene!r} is a new scene: say how the verdict policy uses it with --group "
            "(force, friendly, police or off_topic)."
        )
    if group is not None and group not in ("force", "friendly", "police", "off_topic"):
        raise UsageError("--group is one of force, friendly, police, off_topic.")
    base = prompts.scenes.get(scene)
    spec = Scene.model_validate({
        **(base.model_dump() if base else {"threshold": 0.5}),
        "group": group or (base.group if base else "force"),
        "prompts": prompts_text or (base.prompts if base else [scene.replace("_", " ")]),
        "head": None, "isotonic": None, "scale": 1.0, "bias": 0.0,
    })  # fmt: skip
    with_scene = prompts.replaced(scenes={**prompts.scenes, scene: spec})
    labelled = read_source(settings, src, with_scene.names)
    with_label = [lp for lp in labelled.posts if lp.labels.scenes is not None]
    positives = sum(1 for lp in with_label if scene in (lp.labels.scenes or ()))
    if positives == 0 or positives == len(with_label):
        raise UsageError(
            f"`scenes fit {scene}` needs labelled examples of both kinds: photos that show "
            f"{scene} and photos that do not ({positives} of {len(with_label)} posts with "
            "scene labels show it). Label a few of each (4–16 already help) in the `scenes` "
            "column."
        )
    labelled.posts = with_label
    with console.status("Loading the scene model…", spinner="dots"):
        enc = _encoder(settings, encoder)
        scorer = SceneScorer(enc, with_scene, cache_dir=settings.cache_dir)
    collected = _collect(settings, labelled, _standalone_embedder(settings, enc, src.use_cache),
                         console)  # fmt: skip
    j = scorer.names.index(scene)
    y, _ = scene_labels(collected.posts, scorer.names)
    yj = y[:, j]
    if yj.sum() == 0 or yj.sum() == len(yj):
        raise UsageError(f"After the failed posts, no example of both kinds is left for {scene}.")
    text = (scorer.positive[j] - scorer.contrast[j]).astype(np.float64)
    x = collected.embeddings.astype(np.float64)
    head = fit_head(x, yj, text)
    if head.a <= 0:
        raise UsageError(f"The examples of {scene} do not separate from the others; label more.")
    table = shots_table(x, yj, text) if shots else []
    head_file = out.with_name(f"{out.stem}.{scene}.safetensors")
    sha = save_head(head_file, head.direction, enc.model_id, scene)
    fitted_scene = Scene.model_validate({
        **spec.model_dump(), "threshold": 0.5, "scale": round(head.a / enc.logit_scale, 8),
        "bias": round(head.b, 6),
        "head": HeadRef(file=head_file.name, sha256=sha, blend=head.blend,
                        examples=head.examples, positives=head.positives).model_dump(),
    })  # fmt: skip
    from workers.scenes.prompts import Calibration

    old = prompts.calibration
    provenance = dict(old.scenes) if old else {}
    provenance[scene] = {
        "tool": "scenes fit", "method": "few-shot head", "examples": head.examples,
        "positives": head.positives, "blend": head.blend, "cv_auc_by_blend":
        {str(k): v for k, v in head.cv_auc.items()}, "shots": table,
    }  # fmt: skip
    from datetime import UTC, datetime

    cal = Calibration(
        model_id=enc.model_id, fitted_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool="backfire scenes fit", source=labelled.source,
        samples=len(collected.posts), scenes=provenance,
    )  # fmt: skip
    fitted = with_scene.replaced(scenes={**with_scene.scenes, scene: fitted_scene},
                                 calibration=cal)  # fmt: skip
    # Heads of other scenes (an earlier fit) travel with the YAML into the new folder.
    import shutil

    for name, sc in fitted.scenes.items():
        if sc.head is not None and name != scene:
            dst = out.resolve().parent / sc.head.file
            if prompts.head_path(name).resolve() != dst:
                shutil.copyfile(prompts.head_path(name), dst)
    fitted._base_dir = out.resolve().parent
    save_prompt_set(fitted, out, f"Scene {scene} fitted by `backfire scenes fit` on "
                                 f"{len(collected.posts)} labelled posts for {enc.model_id}.")
    result = {
        "out": str(out), "head": str(head_file), "scene": scene, "new": new,
        "model_id": enc.model_id, "prompt_set": fitted.hash, **provenance[scene],
    }  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        con = Console(highlight=False)
        con.print(
            f"{scene}: head fitted on {head.examples} examples ({head.positives} showing it), "
            f"blend {head.blend:.2f} (0 = prompts only, 1 = examples only; chosen by "
            "cross-validation)."
        )
        for row in table:
            con.print(
                f"  {row['shots']:>3} examples: held-out AUC zero-shot {_fmt(row['zero_shot_auc'])}"
                f" vs few-shot {_fmt(row['few_shot_auc'])} ({row['draws']} draws)"
            )
        con.print(f"Wrote {out} and {head_file} (prompt set {fitted.hash}).", soft_wrap=True)
    return result


# --- the commands -----------------------------------------------------------------------------
def eval_command(
    labelled: Labelled = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write a self-contained HTML page.")
    ] = None,
    as_json: AsJson = False,
    from_store: FromStore = False,
    hashtag: Hashtag = None,
    skip_bad: SkipBad = False,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Resamples for the 95 % intervals (0 = none).")
    ] = 200,
    compare_precision: Annotated[
        str | None,
        typer.Option("--compare-precision", help="Also score with the image tower at this "
                     "precision (int8 or float32) and print verdict agreement and the per-scene "
                     "AUC difference against the run's own."),
    ] = None,  # fmt: skip
    scenes_file: ScenesFile = None,
    no_cache: NoCache = False,
    allow_private_network: Annotated[bool, allow_private("image URLs")] = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    model_name: ModelName = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    image_precision: ImagePrecision = None,
) -> None:
    """How right is Backfire on YOUR posts? Per scene: ROC-AUC, average precision,
    precision/recall/F1 at the threshold, the best-F1 threshold, calibration error (with
    bootstrap 95 % intervals); verdict confusion matrix and macro F1; caption irony F1.

    Examples:

      backfire eval labelled.csv --out eval.html

      backfire eval --from-store --hashtag myNYPD --json

      backfire eval labelled.csv --compare-precision int8   # is int8 good enough here?
    """
    settings, src = _start(locals())
    run_eval(settings, src, err, out=out, as_json=as_json, rounds=bootstrap,
             compare_precision=compare_precision)  # fmt: skip


def calibrate_command(
    labelled: Labelled = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The calibrated scenes YAML.")] = Path(
        "my-scenes.yaml"
    ),
    target_precision: Annotated[
        float | None,
        typer.Option("--target-precision", help="Choose each threshold for this precision "
                                                "(most recall); default: best F1."),
    ] = None,  # fmt: skip
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds.")] = 5,
    scene: Annotated[
        list[str] | None, typer.Option("--scene", help="Only this scene (repeatable).")
    ] = None,
    as_json: AsJson = False,
    from_store: FromStore = False,
    hashtag: Hashtag = None,
    skip_bad: SkipBad = False,
    scenes_file: ScenesFile = None,
    no_cache: NoCache = False,
    allow_private_network: Annotated[bool, allow_private("image URLs")] = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    model_name: ModelName = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    image_precision: ImagePrecision = None,
) -> None:
    """Fit each scene's scale, bias and threshold to your labelled posts (Platt scaling;
    isotonic where there are many positives) and write a copy of the scenes YAML with the
    fitted values and their provenance. Figures are out-of-sample (k-fold).

    Examples:

      backfire calibrate labelled.csv --out my-scenes.yaml

      backfire calibrate labelled.csv --target-precision 0.9 --out my-scenes.yaml

      BACKFIRE_SCENES_FILE=my-scenes.yaml backfire score posts.csv --out verdicts.jsonl
    """
    settings, src = _start(locals())
    run_calibrate(settings, src, err, out, target_precision=target_precision, folds=folds,
                  only=scene, as_json=as_json)  # fmt: skip


def fit_command(
    scene: Annotated[str, typer.Argument(help="The scene to learn (existing or new).")],
    labelled: Annotated[
        Path | None, typer.Option("--from", help="Labelled posts (CSV/JSONL with `scenes`).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The scenes YAML to write.")] = Path(
        "my-scenes.yaml"
    ),
    group: Annotated[
        str | None, typer.Option("--group", help="For a new scene: force, friendly, police, "
                                                 "off_topic.")
    ] = None,  # fmt: skip
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", help="Describe the scene (repeatable).")
    ] = None,
    shots: Annotated[
        bool, typer.Option("--shots/--no-shots", help="Report zero- vs few-shot at 4-32 examples.")
    ] = True,
    as_json: AsJson = False,
    from_store: FromStore = False,
    hashtag: Hashtag = None,
    skip_bad: SkipBad = False,
    scenes_file: ScenesFile = None,
    no_cache: NoCache = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = None,
    model_name: ModelName = None,
    pretrained: Pretrained = None,
    model_config: ModelConfig = None,
    image_precision: ImagePrecision = None,
) -> None:
    """Teach a scene from a handful of labelled photos: a linear probe on the image embeddings
    blended with the prompts' direction (weight by cross-validation), stored beside the YAML.

    Examples:

      backfire scenes fit kettling --from labelled.csv --group force --out my-scenes.yaml

      backfire scenes fit restraint --from labelled.csv --out my-scenes.yaml
    """
    settings, src = _start(locals())
    run_fit(settings, scene, src, err, out, group=group, prompts_text=prompt, shots=shots,
            as_json=as_json)  # fmt: skip
