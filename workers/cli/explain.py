"""`backfire explain`: the verdict for given scene probabilities and a caption (or a stored
post, or an image), with every term of the policy and its value, for tuning verdict.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workers.cli.common import settings_with
from workers.errors import UsageError

if TYPE_CHECKING:
    from workers.domain import CaptionScores
    from workers.scoring.verdict import Explanation


def _parse_scenes(given: list[str], names: list[str]) -> dict[str, float]:
    scenes = dict.fromkeys(names, 0.0)
    for item in given:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in scenes:
            raise UsageError(
                f"--scene takes NAME=PROBABILITY with a scene of the prompt set, got {item!r}; "
                f"scenes: {', '.join(names)}"
            )
        try:
            p = float(value)
        except ValueError:
            p = -1.0
        if not 0.0 <= p <= 1.0:
            raise UsageError(f"--scene {name}: the probability must be a number in [0, 1], "
                             f"got {value!r}")
        scenes[name] = p
    return scenes


def _stored(settings: Any, post_id: str) -> tuple[str, dict[str, float], dict | None]:
    """(caption text, scenes, stored caption scores) of a stored post's current verdict."""
    from workers.store import open_database
    from workers.store.posts import get_post

    db = open_database(settings)  # a machine that never stored a post gets an empty store
    try:
        view = get_post(db, None, post_id)
    finally:
        db.dispose()
    record = view.verdict.record if view.verdict is not None else None
    if not record or not record.get("scenes"):
        raise UsageError(f"post {post_id!r} has no scored verdict yet (status "
                         f"{view.post.status}); explain it once it is scored")
    return view.post.caption or "", dict(record["scenes"]), record.get("caption")


def explain(
    caption: Annotated[str | None, typer.Option("--caption", help="The post's caption.")] = None,
    scene: Annotated[
        list[str] | None,
        typer.Option("--scene", help="NAME=PROBABILITY, repeatable (scenes not given are 0)."),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option("--image", exists=True, dir_okay=False,
                     help="Score this image's scenes with the CLIP model instead of --scene."),
    ] = None,
    post_id: Annotated[
        str | None,
        typer.Option("--post-id", help="A stored post (API or --queue runs): its scenes and "
                     "caption scores as stored; --caption re-scores another caption over them."),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", envvar="BACKFIRE_POLICY_FILE", help="verdict.yaml to apply."),
    ] = None,
    model_file: Annotated[
        Path | None,
        typer.Option("--caption-model", envvar="BACKFIRE_CAPTION_MODEL_FILE",
                     help="Caption model file; default the shipped one."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option("--precision", help="Caption model precision (default "
                     "BACKFIRE_CAPTION_PRECISION, int8)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every term as one JSON object.")] = False,
) -> None:
    """Print the verdict for scene probabilities and a caption, with every policy term.

    Example:

        backfire explain --caption "Thanks NYPD for keeping us safe" \\
            --scene restraint=0.4 --scene police_present_neutral=0.8
    """
    from workers.caption import load_caption_scorer
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import VerdictPolicy, load_policy

    settings = settings_with(policy_file=policy_file, caption_model_file=model_file,
                             caption_precision=precision)
    if sum(x is not None and x != [] for x in (scene, image, post_id)) > 1:
        raise UsageError("give the scenes one way: --scene, --image or --post-id")
    prompts = load_prompt_set(settings.scenes_file)
    policy = VerdictPolicy(load_policy(settings.policy_file), prompts)
    stored_caption = None
    if post_id is not None:
        text, scenes, stored_caption = _stored(settings, post_id)
        scenes = {n: float(scenes.get(n, 0.0)) for n in prompts.names}
        if caption is not None:
            text, stored_caption = caption, None
    else:
        if caption is None:
            raise UsageError("give --caption (and --scene NAME=P or --image), or --post-id")
        text = caption
        if image is not None:
            scenes = _image_scenes(settings, image)
        else:
            scenes = _parse_scenes(scene or [], prompts.names)
    if stored_caption is not None:
        scores = _caption_from_record(stored_caption)
    else:
        [scores] = load_caption_scorer(settings).score_batch([text])
    ex = policy.explain(scenes, scores)
    if as_json:
        typer.echo(json.dumps(_as_json(text, scenes, scores, ex, settings.policy_file),
                              ensure_ascii=False, indent=1))
        return
    _print(text, scenes, scores, ex, settings.policy_file)


def _image_scenes(settings: Any, image: Path) -> dict[str, float]:
    from workers.scoring.pipeline import Pipeline

    pipe = Pipeline.from_settings(settings)
    return pipe.scene_probabilities([pipe.prepare(image.read_bytes())])[0]


def _caption_from_record(d: dict) -> CaptionScores:
    from workers.domain import CaptionScores, Stance

    st = d.get("stance")
    return CaptionScores(float(d.get("sarcasm", 0.0)), float(d.get("sentiment", 0.0)),
                         tuple(d.get("cues") or ()), str(d.get("model", "")),
                         Stance.from_dict(st) if st else None)


def _as_json(text: str, scenes: dict[str, float], scores: CaptionScores, ex: Explanation,
             policy_file: Path) -> dict:
    def terms(ts):
        return [{"name": t.name, "formula": t.formula, "value": round(t.value, 4),
                 "weight": t.weight, "weighted": round(t.weighted, 4)} for t in ts]

    return {
        "caption": text, "caption_scores": scores.as_dict(), "policy": str(policy_file),
        "scenes": {k: round(v, 4) for k, v in scenes.items() if v},
        "inputs": {k: round(v, 4) for k, v in ex.inputs.items()},
        "derived": {k: round(v, 4) for k, v in ex.derived.items()},
        "stance_source": ex.stance_source,
        "backlash_terms": terms(ex.backlash_terms), "backlash": round(ex.backlash, 4),
        "supportive_terms": terms(ex.supportive_terms), "supportive": round(ex.supportive, 4),
        "rule": ex.rule, "verdict": ex.verdict.label,
        "confidence": round(ex.verdict.confidence, 4), "reasons": list(ex.verdict.reasons),
    }


def _print(text: str, scenes: dict[str, float], scores: CaptionScores, ex: Explanation,
           policy_file: Path) -> None:
    v = ex.verdict
    echo = typer.echo  # plain lines: never wrapped, easy to diff while tuning the YAML
    echo(f"verdict {v.label}  confidence {v.confidence:.2f}  ({ex.rule})")
    echo(f"caption {text!r}  [{scores.model}]")
    echo(f"policy  {policy_file}")
    echo("scenes  " + (", ".join(f"{k} {p:.2f}" for k, p in scenes.items() if p) or "(none)"))
    echo("inputs")
    for k, x in ex.inputs.items():
        echo(f"  {k:<22} {x:+.4f}" if k == "sentiment" else f"  {k:<22} {x:.4f}")
    echo(f"  {'stance from':<22} {ex.stance_source}")
    echo("derived")
    for k, x in ex.derived.items():
        echo(f"  {k:<22} {x:.4f}")
    for title, ts, score in (("backlash", ex.backlash_terms, ex.backlash),
                             ("supportive", ex.supportive_terms, ex.supportive)):
        echo(f"{title} = 1 - prod(1 - weight x term) = {score:.4f}")
        for t in ts:
            echo(f"  {t.name:<24} {t.weight:.2f} x {t.value:.4f} = {t.weighted:.4f}   "
                 f"({t.formula})")
    echo("reasons")
    for r in v.reasons:
        echo(f"  {r}")
