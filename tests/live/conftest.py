"""Fixtures of the live path: the fake platforms on 127.0.0.1, the colour pipeline, and a
watcher running in a thread of the test process (subprocesses use tests/support/fake_backfire)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.support.fake_backfire import COLOURS
from tests.support.fake_platforms import FakePlatforms
from tests.support.fakes import ColourSceneEncoder
from workers.config import Settings
from workers.scoring.pipeline import Pipeline


@pytest.fixture
def platforms() -> Iterator[FakePlatforms]:
    fake = FakePlatforms()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_network": True, "batch_size": 8})


@pytest.fixture
def colour_pipeline(live_settings: Settings) -> Pipeline:
    from workers.caption.cues import CueCaptionScorer
    from workers.scenes.prompts import load_prompt_set
    from workers.scoring.verdict import load_policy

    prompts = load_prompt_set(live_settings.scenes_file)
    return Pipeline(
        ColourSceneEncoder(prompts, COLOURS), prompts, CueCaptionScorer(),
        load_policy(live_settings.policy_file), live_settings,
    )  # fmt: skip


class Running:
    """A watcher in a thread; `stop()` stops it as SIGINT would and returns its totals."""

    def __init__(self, watcher) -> None:  # noqa: ANN001
        self.watcher = watcher
        self.totals = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.totals = self.watcher.run()
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self, timeout: float = 30):
        self.watcher.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the watcher did not stop"
        if self.error is not None:
            raise self.error
        return self.totals
