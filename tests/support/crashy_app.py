"""The real Celery app with test hooks in the pipeline, for failure tests:
posts whose caption starts with KILL-WORKER kill their worker process (like an image that
crashes a native decoder); RAISE-ERROR raises a Python exception every time and RAISE-ONCE only
on the first attempt (a marker file in BACKFIRE_TEST_MARK_DIR remembers it); and
BACKFIRE_TEST_TASK_DELAY slows every scoring call so a test can kill the worker mid-task;
BACKFIRE_TEST_LOAD_DELAY slows each process's model load (a worker that answers pings while no
process holds a model yet)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from workers.queue.app import app
from workers.scoring import pipeline as _pipeline

_score_items = _pipeline.Pipeline.score_items


def _score_items_with_hooks(self, items):  # type: ignore[no-untyped-def]
    for post, _data in items:
        if post.caption.startswith("KILL-WORKER"):
            os.kill(os.getpid(), signal.SIGKILL)
        if post.caption.startswith("RAISE-ERROR"):
            raise RuntimeError("scorer bug: index out of range")
        if post.caption.startswith("RAISE-ONCE"):
            mark = Path(os.environ["BACKFIRE_TEST_MARK_DIR"]) / f"raised-{post.post_id}"
            if not mark.exists():
                mark.touch()
                raise ConnectionError("model server went away")
    time.sleep(float(os.environ.get("BACKFIRE_TEST_TASK_DELAY", "0")))
    return _score_items(self, items)


_pipeline.Pipeline.score_items = _score_items_with_hooks
_from_settings = _pipeline.Pipeline.from_settings.__func__  # type: ignore[attr-defined]


def _from_settings_slowly(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
    time.sleep(float(os.environ.get("BACKFIRE_TEST_LOAD_DELAY", "0")))
    return _from_settings(cls, *args, **kwargs)


_pipeline.Pipeline.from_settings = classmethod(_from_settings_slowly)  # type: ignore[assignment]
__all__ = ["app"]
