"""The Celery app, configured from the one Settings object (decision 4 of DESIGN.md).

Messages carry post ids only (JSON, never pickle); Redis is transport, the database is the
truth, so Celery results are ignored. Task names are explicit strings, so messages queued by an
older release still find their task. `celery -A workers.queue.app worker` finds `app` below,
built on first access (importing this module reads no settings); `backfire worker` and the API
build theirs with `create_app(settings)`, and the API sends tasks by name, so it never imports
the pipeline (or torch).
"""

from __future__ import annotations

from celery import Celery

from workers.config import Settings, get_settings

SCORE_TASK = "backfire.score_post"
WEBHOOK_TASK = "backfire.deliver_webhook"
ALERT_TASK = "backfire.deliver_alert"
#: Remote-control command a worker's main process answers with how many of its pool children
#: hold a loaded model (`workers.queue.readiness`); `/readyz` counts workers by it.
READY_COMMAND = "backfire_ready"


def create_app(settings: Settings) -> Celery:
    app = Celery("backfire", broker=settings.redis_url, include=["workers.queue.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        event_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        # At-least-once: ack after the task ran; a killed child puts its message back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(1, settings.task_time_limit_s - 15),
        task_default_queue=settings.queue_name,
        broker_transport_options={
            # Unacked messages come back after this: must exceed the slowest task.
            "visibility_timeout": settings.visibility_timeout_s,
            # Several deployments (and test runs) can share one Redis without seeing each other.
            "global_keyprefix": f"{settings.redis_key_prefix}:",
            "socket_connect_timeout": settings.redis_timeout_s,
            "socket_timeout": max(settings.redis_timeout_s, 5.0),
        },
        # Publishing must fail fast when Redis is down: the post is already committed and the
        # reconciler will enqueue it later; an upload must not hang on the broker.
        task_publish_retry=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # The model loads in each child at start: give children time before Celery gives up.
        worker_proc_alive_timeout=180,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    # `celery -A workers.queue.app` (and tests' helper apps) use the environment's settings.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(get_settings())
        return _app
    raise AttributeError(name)
