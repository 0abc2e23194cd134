"""The verdict table of issue 16's part 3 with the shipped caption model and policy, over fixed
scenes, for the held-out human-labelled stance rows (critical / supportive tweets about the
police; ../shared/data/police-stance) and for hand-written captions.

    .venv/bin/python bench/stance_policy_table.py [--precision int8] [--policy FILE]

Prints, per scene, the share of critical captions that become backlash and of supportive
(sincere) ones that become supportive / backlash. The outside bar (issue 16, on campaign
replies): over a neutral police photo >= 60 % of critical -> backlash, >= 50 % of sincere ->
supportive, <= 10 % of sincere -> backlash.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "police-stance"
SCENES = {
    "neutral police": {"police_present_neutral": 0.9},
    "friendly": {"friendly": 0.9},
    "uncertain force": {"restraint": 0.4, "police_present_neutral": 0.8},
    "clear force": {"restraint": 0.92, "arrest": 0.6},
}
# Hand-written for this table (not anchors, not from any dataset or coverage).
HAND = {
    "critical": [
        "Watched officers drag a woman out of her car for nothing. Sickening.",
        "cops in this city think they are above the law",
        "Why does it take a viral video for a cop to face any consequences?",
        "My brother got stopped and frisked three times this month. Thanks, officers.",
        "Wonderful to see the police so busy arresting people for sleeping outside",
        "Another day, another cop car parked in the bike lane",
    ],
    "sincere": [
        "Thanks NYPD for keeping us safe",
        "Much respect to the officers who stayed all night at the flood shelter",
        "God bless our police, they never get the credit they deserve",
        "Proud of our officers at the community BBQ today!",
        "Officer helped an elderly woman cross the street this morning",
        "Great to meet the officers from our precinct at the block party",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--policy", type=Path, action="append", default=[],
                    help="verdict.yaml (repeatable: each is tabled; default the shipped one)")
    args = ap.parse_args()

    from workers.caption import SHIPPED_MODEL_FILE, load_model_file
    from workers.caption.training.stance_data import load_stance, parts
    from workers.config import Settings
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import VerdictPolicy, load_policy

    settings = Settings()
    prompts = load_prompt_set(settings.scenes_file)
    model = load_model_file(SHIPPED_MODEL_FILE, precision=args.precision)
    rows = load_stance(DATA)
    held = rows.subset(parts(rows)["human"])
    sets = {
        "human critical": [t for t, lab in zip(held.texts, held.labels, strict=True)
                           if lab == "critical"],
        "human supportive": [t for t, lab in zip(held.texts, held.labels, strict=True)
                             if lab == "supportive"],
        "human neutral": [t for t, lab in zip(held.texts, held.labels, strict=True)
                          if lab == "neutral"],
        "hand critical": HAND["critical"],
        "hand sincere": HAND["sincere"],
    }
    scores = {name: model.score_batch(texts) for name, texts in sets.items()}
    for path in args.policy or [settings.policy_file]:
        policy = VerdictPolicy(load_policy(path), prompts)
        print(f"model {model.model_id}, policy {path} ({policy.policy.hash})")
        print(f"{'scene':<16} {'captions':<17} {'n':>4} {'backlash':>9} {'supportive':>11} "
              f"{'neutral':>8}")
        for scene, given in SCENES.items():
            probs = dict.fromkeys(prompts.names, 0.02) | given
            for name, caps in scores.items():
                verdicts = Counter(policy.decide(probs, s).label for s in caps)
                n = len(caps)
                print(f"{scene:<16} {name:<17} {n:>4} {verdicts['backlash'] / n:>9.0%} "
                      f"{verdicts['supportive'] / n:>11.0%} {verdicts['neutral'] / n:>8.0%}")


if __name__ == "__main__":
    main()
