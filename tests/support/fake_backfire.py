"""`python -m tests.support.fake_backfire ARGS`: the real `backfire` command line with the
deterministic colour encoder at the scene seam and the v0 caption cues (tests/support/fakes.py):
a red photo under a cheerful caption is backlash, a green one under a warm caption supportive.
For subprocess tests of `watch` and `replay` whose subject is the live path, not the models."""

from __future__ import annotations

from tests.support.fakes import ColourSceneEncoder
from workers.scoring import pipeline as _pipeline

COLOURS = {
    (220, 20, 20): "restraint",
    (20, 200, 20): "friendly",
    (20, 20, 220): "off_topic",
    (128, 128, 128): "police_present_neutral",
}


def _from_settings(cls, settings, encoder=None, processes=1):  # type: ignore[no-untyped-def]
    from workers.caption.cues import CueCaptionScorer
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import load_policy

    prompts = load_prompt_set(settings.scenes_file)
    return cls(
        ColourSceneEncoder(prompts, COLOURS), prompts, CueCaptionScorer(),
        load_policy(settings.policy_file), settings,
    )  # fmt: skip


if __name__ == "__main__":
    # Patched only when run as the command: tests import COLOURS from here, and a patch at
    # import time would hand every later test in the process the colour encoder.
    _pipeline.Pipeline.from_settings = classmethod(_from_settings)  # type: ignore[method-assign]
    from workers.cli.app import main

    main()
