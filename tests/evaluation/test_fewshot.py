"""`backfire scenes fit`: a scene the fake encoder's prompts cannot express ("kettling": no text
reaches its axis) is learnt from 8 labelled examples and beats zero-shot on held-out posts;
with no example it refuses clearly; the head lives beside the YAML and in pipeline_version."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.support.fakes import latent_image, write_labelled
from workers.cli.evaluate import Source, run_fit
from workers.errors import ConfigError, UsageError
from workers.evaluation.metrics import roc_auc
from workers.scenes.prompts import load_prompt_set
from workers.scenes.scorer import SceneScorer


def _examples(folder, names, shows: list[bool], seed: int):
    folder.mkdir(parents=True)
    path = folder / "few.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["post_id", "image", "scenes"])
        for i, yes in enumerate(shows):
            present = {"kettling"} if yes else set()
            if i % 3 == 0:
                present.add("arrest")  # other scenes vary too
            (folder / f"{i}.png").write_bytes(latent_image(names, present, seed + i))
            w.writerow([f"k{i}", f"{i}.png", ";".join(sorted(present)) or "none"])
    return path


def _held_out_auc(tmp_path, names, encoder, prompts) -> tuple[float, float]:
    held = write_labelled(tmp_path / "held", names, 160, seed=40_000,
                          scenes=("kettling", "arrest"), rate=0.35)  # fmt: skip
    from workers.evaluation.labels import read_labelled

    posts = read_labelled(held, [*names, "kettling"]).posts
    from PIL import Image

    x = encoder.encode_images([encoder.prepare(Image.open(p.post.image)) for p in posts])
    y = np.array([int("kettling" in (p.labels.scenes or ())) for p in posts])
    scorer = SceneScorer(encoder, prompts)
    j = scorer.names.index("kettling")
    return roc_auc(y, scorer.probabilities(x)[:, j]) or 0.0, float(y.mean())


def test_eight_examples_beat_zero_shot_on_held_out(tmp_path, eval_settings, encoder, names,
                                                    console):  # fmt: skip
    few = _examples(tmp_path / "few", names, [True, False] * 4, seed=1000)
    out = tmp_path / "mine" / "my-scenes.yaml"
    result = run_fit(eval_settings, "kettling", Source(few), console, out, group="force",
                     prompts_text=["police kettling protesters"], encoder=encoder)  # fmt: skip
    assert result["examples"] == 8 and result["positives"] == 4 and result["new"]
    head_file = out.with_name("my-scenes.kettling.safetensors")
    assert head_file.is_file()

    fitted = load_prompt_set(out)
    scene = fitted.scenes["kettling"]
    assert scene.group == "force" and scene.head is not None
    assert scene.head.file == head_file.name and scene.head.examples == 8

    # Zero-shot: the same scene with its prompt only (what the prompts can express: nothing).
    zero = fitted.replaced(scenes={**fitted.scenes, "kettling": scene.model_copy(
        update={"head": None, "scale": 1.0, "bias": 0.0})})  # fmt: skip
    zero_auc, rate = _held_out_auc(tmp_path, names, encoder, zero)
    few_auc, _ = _held_out_auc(tmp_path / "again", names, encoder, fitted)
    assert 0.2 < rate < 0.5
    assert zero_auc < 0.65, zero_auc
    assert few_auc > 0.85 and few_auc > zero_auc + 0.2, (zero_auc, few_auc)

    # The head is hashed into the prompt set (pipeline_version) and checked on load.
    head_file.write_bytes(head_file.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ConfigError, match="sha256 differs"):
        SceneScorer(encoder, load_prompt_set(out))


def test_zero_examples_are_refused_clearly(tmp_path, eval_settings, encoder, names, console):
    none = _examples(tmp_path / "none", names, [False] * 8, seed=2000)
    with pytest.raises(UsageError) as ei:
        run_fit(eval_settings, "kettling", Source(none), console, tmp_path / "o.yaml",
                group="force", encoder=encoder)  # fmt: skip
    assert "needs labelled examples of both kinds" in ei.value.message
    assert "0 of 8" in ei.value.message
    with pytest.raises(UsageError, match="--group"):
        run_fit(eval_settings, "kettling", Source(none), console, tmp_path / "o.yaml",
                encoder=encoder)  # fmt: skip
    assert not (tmp_path / "o.yaml").exists()


def test_shots_table_compares_zero_and_few_shot(tmp_path, eval_settings, encoder, names,
                                                 console):  # fmt: skip
    data = write_labelled(tmp_path / "many", names, 60, seed=3000, scenes=("kettling",),
                          rate=0.4)  # fmt: skip
    result = run_fit(eval_settings, "kettling", Source(data), console, tmp_path / "m.yaml",
                     group="force", encoder=encoder)  # fmt: skip
    shots = {row["shots"]: row for row in result["shots"]}
    assert set(shots) == {4, 8, 16, 32}
    assert shots[8]["few_shot_auc"] > shots[8]["zero_shot_auc"]
    assert shots[32]["few_shot_auc"] >= shots[4]["few_shot_auc"] - 0.05
