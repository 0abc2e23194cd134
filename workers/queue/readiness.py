"""Whether a worker's pool children hold a model, told to the worker's main process.

A pool child loads its model at start (`worker_process_init`). Celery logs an exception raised
in that signal and carries on, so a child whose checkpoint was truncated used to log the error,
report "ready", then take every message and ack it unscored. Now a child tells the main process
how its load went, through a pipe made before the pool forks:

- a child that cannot load its model logs CRITICAL, says so and exits; the main process logs
  CRITICAL and stops consuming (a warm shutdown: the messages it holds were never acked, so
  Redis hands them to another worker), and the worker exits with 78 (EX_CONFIG), which a
  supervisor shows as a configuration error;
- a child that loaded says so; the `READY_COMMAND` control command answers how many live
  children hold a model, and `/readyz` counts only workers with at least one.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import Any

log = logging.getLogger("backfire.worker")

#: sysexits.h EX_CONFIG: "something was found in an unconfigured or misconfigured state".
EX_CONFIG = 78
_MAX_LINE = 4000  # below PIPE_BUF (4096): one write is one message, never interleaved


class Readiness:
    """One per worker main process; its pipe is inherited by every pool child it forks."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        self._buf = b""
        self._lock = threading.Lock()
        self.parent_pid = os.getpid()
        #: Children (pids) that loaded their model.
        self.loaded: set[int] = set()
        #: The first child's load error, once one failed.
        self.failure: str | None = None
        threading.Thread(target=self._listen, name="backfire-readiness", daemon=True).start()

    # --- in a pool child -----------------------------------------------------------------------
    def report(self, loaded: bool, detail: str = "") -> None:
        line = f"{'ok' if loaded else 'fail'} {os.getpid()} {detail}".replace("\n", " ")
        os.write(self._write_fd, line.encode()[:_MAX_LINE] + b"\n")

    # --- in the main process -------------------------------------------------------------------
    def _listen(self) -> None:
        while self.poll(0.5) is not None:
            pass

    def poll(self, timeout: float = 0.0) -> Readiness | None:
        """Read what children said within `timeout`; returns self, or None if the pipe closed."""
        ready, _, _ = select.select([self._read_fd], [], [], timeout)
        if not ready:
            return self
        with self._lock:
            ready, _, _ = select.select([self._read_fd], [], [], 0)
            if not ready:  # the other reader took it
                return self
            data = os.read(self._read_fd, 65536)
            if not data:
                return None
            self._buf += data
            *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._handle(line.decode(errors="replace"))
        return self

    def _handle(self, line: str) -> None:
        verb, _, rest = line.partition(" ")
        pid_s, _, detail = rest.partition(" ")
        pid = int(pid_s) if pid_s.isdigit() else 0
        if verb == "ok":
            self.loaded.add(pid)
            return
        self.loaded.discard(pid)
        if self.failure is None:
            self.failure = detail or "unknown error"
            log.critical(
                "pool child %s could not load the scoring model (%s): this worker stops "
                "consuming and exits with %d (EX_CONFIG); the messages it holds go back to the "
                "queue", pid, self.failure, EX_CONFIG,
            )  # fmt: skip
            from celery.worker import state

            state.should_stop = EX_CONFIG  # a warm shutdown, as SIGTERM starts one

    def models_loaded(self, live_pids: list[int] | None) -> int:
        if live_pids is not None:
            self.loaded &= set(live_pids)
        return len(self.loaded)

    def exit_code(self, code: Any) -> int:
        """The worker's exit status: EX_CONFIG once a child failed to load its model (Celery
        itself may have stopped first, e.g. 'Could not start worker processes'), else Celery's."""
        self.poll(0)
        if self.failure is not None:
            return EX_CONFIG
        return code if isinstance(code, int) else (0 if code is None else 1)


_readiness: Readiness | None = None


def start() -> Readiness:
    """In the main worker process, before the pool forks."""
    global _readiness
    if _readiness is None or _readiness.parent_pid != os.getpid():
        _readiness = Readiness()
    return _readiness


def current() -> Readiness | None:
    return _readiness
