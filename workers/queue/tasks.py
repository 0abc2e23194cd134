"""Celery tasks: thin, like web views. Load the row, call the pipeline, write the result.

State (database, media store, pipeline) is built once per worker process, in that process: the
model loads at `worker_process_init`, and nothing opened in the parent is used after fork. The
settings are the ones `backfire worker` configured (`configure`), else the environment's. A
worker whose model does not load refuses work and stops (`workers.queue.readiness`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from celery.worker.control import control_command

from workers.config import Settings, get_settings
from workers.domain import Post
from workers.errors import MediaError
from workers.notify.backoff import Ladder
from workers.queue import readiness
from workers.queue.app import ALERT_TASK, READY_COMMAND, SCORE_TASK, WEBHOOK_TASK
from workers.store import Database, open_database
from workers.store import posts as repo
from workers.store.blobs import BlobStore
from workers.store.models import PostRow

if TYPE_CHECKING:
    from workers.scoring.pipeline import Pipeline, Scenes

log = logging.getLogger("backfire.worker")

_settings: Settings | None = None


def configure(settings: Settings) -> None:
    """The settings this worker runs with (`backfire worker`'s options laid over the
    environment); set before the worker starts, so its forked children inherit them."""
    global _settings, _state
    _settings, _state = settings, None


def current_settings() -> Settings:
    return _settings or get_settings()


@dataclass
class WorkerState:
    settings: Settings
    db: Database
    blobs: BlobStore
    _pipeline: Pipeline | None = None

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            from workers.scoring.pipeline import Pipeline

            pipeline = Pipeline.from_settings(
                self.settings, processes=self.settings.worker_concurrency
            )
            # An image any worker scored already is not encoded again (same pipeline version).
            pipeline.scene_cache = StoreSceneCache(self.db, pipeline.version)
            self._pipeline = pipeline
        return self._pipeline


_state: WorkerState | None = None
_parent_db: Database | None = None  # the reconciler's, in the main worker process


def state() -> WorkerState:
    global _state
    if _state is None:
        settings = current_settings()
        blobs = BlobStore(settings.resolved_media_dir)
        _state = WorkerState(settings, open_database(settings), blobs)
    return _state


@worker_init.connect
def _import_engine(**_: Any) -> None:
    """Import the engine's code (torch, open_clip, the pipeline) in the main worker process
    before the pool forks: every pool child, and every child restarted after a crash, then
    starts with the modules in place (shared copy-on-write) instead of spending seconds
    importing them. Only imports: no model is loaded and no torch thread is started here, so
    forking stays safe; each child loads its own model in `_init_child`."""
    readiness.start()  # the pipe the children report their model load through
    import torch  # noqa: F401

    from workers.scenes.openclip import import_open_clip

    settings = current_settings()
    import_open_clip(settings.model_name, settings.model_config_file)

    import workers.caption.adapter  # noqa: F401
    import workers.scoring.pipeline  # noqa: F401


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    # Connections inherited from the parent belong to the parent: drop them without closing.
    if _parent_db is not None:
        _parent_db.engine.dispose(close=False)
        if _parent_db.read_engine is not _parent_db.engine:
            _parent_db.read_engine.dispose(close=False)
    global _state
    _state = None
    try:
        state().pipeline  # noqa: B018  load the model now, not in the first task
    except Exception as e:
        # No model, no scoring: a child that carried on would take messages it cannot score.
        log.critical("the scoring model could not be loaded: %s: %s", type(e).__name__, e,
                     exc_info=True)  # fmt: skip
        rd = readiness.current()
        if rd is not None:
            rd.report(False, f"{type(e).__name__}: {e}")
        os._exit(readiness.EX_CONFIG)
    rd = readiness.current()
    if rd is not None:
        rd.report(True)


@control_command(name=READY_COMMAND)
def _ready_command(panel: Any, **_: Any) -> dict[str, Any]:
    """Answered by the main worker process (`/readyz`): live pool children holding a model."""
    rd = readiness.current()
    try:
        live = list(panel.consumer.pool.info.get("processes", []))
    except Exception:  # a pool without the list (solo, threads): count what was reported
        live = None
    loaded = rd.models_loaded(live) if rd is not None else (1 if _state_loaded() else 0)
    return {"models_loaded": loaded, "model_failed": rd is not None and rd.failure is not None}


def _state_loaded() -> bool:
    return _state is not None and _state._pipeline is not None


def _pipeline_or_refuse(st: WorkerState) -> Pipeline:
    """The pipeline; if it cannot be built (a pool that skipped `_init_child`: solo, threads),
    the message goes back to the queue untouched and this worker stops, exit 78."""
    try:
        return st.pipeline
    except Exception as e:
        log.critical("the scoring model could not be loaded: %s: %s; this worker stops",
                     type(e).__name__, e, exc_info=True)  # fmt: skip
        from celery.worker import state as worker_state

        worker_state.should_stop = readiness.EX_CONFIG
        raise Reject(f"no model: {e}", requeue=True) from e


class StoreSceneCache:
    """Scene probabilities of images already scored by any worker (same pipeline version), so an
    identical image is encoded once across the whole queue. Decode errors are not kept."""

    def __init__(self, db: Database, version: str) -> None:
        self.db, self.version = db, version

    def get(self, sha: str) -> Scenes | None:
        return repo.cached_scenes(self.db, sha, self.version)

    def put(self, sha: str, known: Scenes | MediaError) -> None:
        if not isinstance(known, MediaError):
            repo.cache_scenes(self.db, sha, self.version, known)


def _post_of(row: PostRow) -> Post:
    return Post(
        post_id=row.post_id,
        image=row.image_url,
        caption=row.caption or "",
        hashtag=row.hashtag,
        created_at=row.created_at,
        author=row.author,
    )


@shared_task(name=SCORE_TASK, bind=True, ignore_result=True, max_retries=None)
def score_post(self: Any, seq: int) -> str:
    """Score post `seq` once per pipeline version, whatever the number of deliveries.

    Attempts are counted in the database (not by Celery: a killed worker never reports back), so
    `max_retries` is off here and `settings.max_attempts` decides when to give up. The post row
    is read once, by the claim; everything after works on that copy.
    """
    st = state()
    pipeline = _pipeline_or_refuse(st)  # before the claim: a refused post keeps its attempts
    outcome, row = repo.claim_row(st.db, seq, pipeline.version, st.settings.max_attempts)
    if outcome != "run" or row is None:
        if outcome == "quarantined" and row is not None:
            log.warning("post %s quarantined after repeated worker crashes", seq)
            _maybe_webhook(row)
        return outcome
    try:
        return _score(st, pipeline, row)
    except Exception as e:  # the Celery boundary: anything else is retried, then quarantined
        return _after_error(self, st, row, e)


def _score(st: WorkerState, pipeline: Pipeline, row: PostRow) -> str:
    post = _post_of(row)
    started = time.perf_counter()
    try:
        data = st.blobs.get(row.media_sha256)
        result = pipeline.score_items([(post, data)])[0]
    except MediaError as e:
        # The input is bad: retrying cannot help. The post fails now, with its reason.
        result = pipeline.error_result(post, e, row.media_sha256)
    elapsed = time.perf_counter() - started
    thresholds = {n: s.threshold for n, s in pipeline.scenes.prompts.scenes.items()}
    detected = sorted(n for n, p in (result.scenes or {}).items() if p >= thresholds.get(n, 1.0))
    repo.record_result(
        st.db, row.seq, pipeline.version, result.as_record(), detected=detected,
        scoring_s=elapsed,
    )  # fmt: skip
    _maybe_webhook(row)
    if result.ok:
        _maybe_alerts(st, row)
    return "done" if result.ok else "failed"


def _after_error(task: Any, st: WorkerState, row: PostRow, exc: Exception) -> str:
    """Record an unexpected exception; retry with exponential backoff, or quarantine the post
    once it has had `max_attempts` attempts. The worker process itself keeps serving."""
    seq = row.seq
    log.exception("scoring post %s raised", seq)
    error = {"type": "worker-error", "message": f"{type(exc).__name__}: {exc}"}
    decision, attempts = repo.record_failure(st.db, seq, error, st.settings.max_attempts)
    if decision == "skip":
        return "skip"
    if decision == "quarantined":
        log.warning("post %s quarantined after %d failed attempts", seq, attempts)
        _maybe_webhook(row)
        return "quarantined"
    delay = Ladder.for_tasks(st.settings).delay(attempts)
    # If the retry cannot be published (broker down), Celery rejects the message; the post is
    # `queued` in the database, so the reconciler sends it again later.
    raise task.retry(exc=exc, countdown=delay)


def _maybe_webhook(row: PostRow) -> None:
    # The claim's copy: a webhook is `pending` from upload until this post's delivery ends.
    if row.callback_url and row.webhook_status == "pending":
        deliver_webhook.apply_async(args=[row.seq, 1])


def _maybe_alerts(st: WorkerState, row: PostRow) -> None:
    """Evaluate the alert rules this verdict can move; hand firings to `deliver_alert`.

    The verdict is stored already: nothing here may fail or retry the scoring task. A firing
    whose message cannot be published is recorded as failed (visible in `backfire alert list`)
    rather than left pending with nobody to send it."""
    from workers.notify.watch import evaluate_for, record_unqueued

    try:
        delivery_ids = evaluate_for(st.db, row)
    except Exception:
        log.exception("alert rules not evaluated after post %s", row.seq)
        return
    for delivery_id in delivery_ids:
        try:
            deliver_alert.apply_async(args=[delivery_id, 1])
        except Exception as e:  # kombu raises many types for a dead broker
            log.warning("alert delivery %s not queued: %s", delivery_id, e)
            record_unqueued(st.db, delivery_id, e)


@shared_task(name=ALERT_TASK, ignore_result=True)
def deliver_alert(delivery_id: int, attempt: int = 1) -> str:
    """One POST of a fired alert; the next attempt is a new message after a backoff, so a slow
    receiver occupies a worker for one attempt at a time, never for the whole retry ladder."""
    from workers.notify.watch import send_delivery

    st = state()
    outcome, delay = send_delivery(st.settings, st.db, delivery_id, attempt)
    if delay is not None:
        deliver_alert.apply_async(args=[delivery_id, attempt + 1], countdown=delay)
    return outcome


@shared_task(name=WEBHOOK_TASK, bind=True, ignore_result=True)
def deliver_webhook(self: Any, seq: int, attempt: int = 1) -> str:
    """POST the finished post to its callback URL; retried with exponential backoff while a
    retry could help (server errors, 408/429, network failures), else failed at once."""
    from workers.notify.webhooks import deliver

    st = state()
    view = repo.get_by_seq(st.db, seq)
    if view is None or not view.post.callback_url or view.post.webhook_status == "delivered":
        return "skip"
    outcome = deliver(st.settings, view)
    if outcome.ok:
        repo.set_webhook_state(st.db, seq, "delivered", attempt)
        return "delivered"
    delay = Ladder.for_webhooks(st.settings).next_delay(attempt, outcome.retry)
    if delay is None:
        repo.set_webhook_state(st.db, seq, "failed", attempt)
        log.warning("webhook for post %s failed after %d attempt(s): %s", seq, attempt,
                    outcome.error)  # fmt: skip
        return "failed"
    repo.set_webhook_state(st.db, seq, "pending", attempt)
    deliver_webhook.apply_async(args=[seq, attempt + 1], countdown=delay)
    return "retrying"


# --- the reconciler inside the worker's main process ------------------------------------------
_stop = threading.Event()


@worker_ready.connect
def _start_reconciler(sender: Any = None, **_: Any) -> None:
    settings = current_settings()
    if settings.reconcile_every_s <= 0:
        return
    from workers.queue.reconcile import Reconciler

    global _parent_db
    _parent_db = open_database(settings, upgrade=False)
    rec = Reconciler(settings, _parent_db, sender.app if sender is not None else None)
    threading.Thread(
        target=rec.run_forever, args=(settings.reconcile_every_s, _stop),
        name="backfire-reconciler", daemon=True,
    ).start()  # fmt: skip


@worker_shutting_down.connect
def _stop_reconciler(**_: Any) -> None:
    _stop.set()
