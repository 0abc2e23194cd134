"""Reference scores of the shipped caption models on a fixed subset of the irony validation
split: the cheap guard (`make test`) against a silently changed model file or inference code.
The full 955-caption re-evaluation against the documented figures runs in `make reproduce`.

The subset is named by position (every STEP-th validation caption), so no text enters the
repository. After shipping a new model file, record its scores once:

    .venv/bin/python -m tests.caption.reference

and commit model_cards/caption-reference-scores.json beside the new file.
"""

from __future__ import annotations

import json
from pathlib import Path

from workers.caption import LINEAR_MODEL_FILE, MINILM_MODEL_FILE, SHIPPED_MODEL_FILE
from workers.config import MODEL_CARDS_DIR

IRONY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "irony"
STANCE = IRONY.parent / "police-stance"
REFERENCE_FILE = MODEL_CARDS_DIR / "caption-reference-scores.json"
#: Every 16th of the 955 validation captions: 60 captions, a few seconds per model in int8.
STEP = 16
#: (file, precision) pairs whose scores are recorded: each shipped file in each precision it
#: documents figures for.
SHIPPED = [
    (SHIPPED_MODEL_FILE, "int8"), (SHIPPED_MODEL_FILE, "float32"), (MINILM_MODEL_FILE, "int8"),
    (MINILM_MODEL_FILE, "float32"), (LINEAR_MODEL_FILE, "float32"),
]  # fmt: skip
SHIPPED_IDS = ["v3-mpnet-int8", "v3-mpnet", "v2-minilm-int8", "v2-minilm", "v1-linear"]
#: Every 4th held-out stance row (human-labelled half + other events: ~100 rows), named by
#: position in the held-out parts, so no text enters the repository.
STANCE_STEP = 4


def key(path: Path, precision: str) -> str:
    return f"{path.name}:{precision}"


def subset_texts() -> list[str]:
    from workers.caption.training.data import load_split

    return load_split(IRONY, "val").texts[::STEP]


def scores(path: Path, precision: str) -> tuple[str, list[float]]:
    """(model id, calibrated sarcasm probability of each subset caption)."""
    from workers.caption import load_model_file

    model = load_model_file(path, precision=precision)
    return model.model_id, [s.sarcasm for s in model.score_batch(subset_texts())]


def stance_subset():
    from workers.caption.training.stance_data import load_stance, parts

    rows = load_stance(STANCE)
    masks = parts(rows)
    held = rows.subset(masks["human"] | masks["events"])
    return held.subset([i % STANCE_STEP == 0 for i in range(len(held))])


def stance_subset_scores(precision: str):
    """(model id, (n, 3) stance probabilities of the subset rows) of the shipped v3 file."""
    import numpy as np

    from workers.caption import load_model_file

    model = load_model_file(SHIPPED_MODEL_FILE, precision=precision)
    scores = model.score_batch(stance_subset().texts)
    return model.model_id, np.array(
        [[s.stance.critical, s.stance.supportive, s.stance.neutral] if s.stance else [0, 0, 1]
         for s in scores])


def main() -> None:
    entries = {}
    for path, precision in SHIPPED:
        model_id, got = scores(path, precision)
        entries[key(path, precision)] = {"model_id": model_id, "scores": [round(s, 6) for s in got]}
        print(f"{key(path, precision)}: {model_id}, {len(got)} scores")
    from workers.caption.training.stance_data import stance_figures

    stance = {}
    for precision in ("int8", "float32"):
        model_id, probs = stance_subset_scores(precision)
        fig = stance_figures(stance_subset().y(), probs)
        stance[precision] = {"model_id": model_id, "auc": fig.auc, "macro_f1": fig.macro_f1,
                             "probabilities": [[round(float(x), 6) for x in r] for r in probs]}
        print(f"stance {precision}: {model_id}, {len(probs)} rows, AUC {fig.auc}")
    doc = {
        "about": "Sarcasm probabilities of the shipped caption models on every "
        f"{STEP}th caption of the irony validation split, and the shipped v3 stance head's "
        f"probabilities (critical, supportive, neutral) on every {STANCE_STEP}th held-out "
        "stance row (tests/caption/reference.py).",
        "step": STEP,
        "models": entries,
        "stance_step": STANCE_STEP,
        "stance": stance,
    }
    REFERENCE_FILE.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE_FILE}")


if __name__ == "__main__":
    main()
