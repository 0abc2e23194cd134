"""`backfire watch`: poll a platform, score what is new, store it, evaluate the alert rules as
verdicts arrive, and say how far behind the watcher is.

One loop per poll interval: the poller yields batches (a page of new posts, oldest first, with
the cursor to save after them); each batch is scored in-process by the same runner and pipeline
as `backfire score` (or handed to the Celery workers with `--queue`), committed to the store
with its verdicts, and only then is the cursor saved (workers/store/watch.py: exactly once
across `kill -9`). Alert rules of the hashtag are evaluated on the store's window right after
each commit; the first delivery attempt is made at once, retries on a timer, so an alert
reaches its receiver in the poll that saw the crossing post.

SIGINT/SIGTERM set `stop`: the batch in hand is finished and its cursor saved, then the loop
ends; a wait (poll interval, backoff, rate limit) is cut short.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from workers.config import Settings
from workers.domain import PostResult, ResultRow, format_duration, iso_utc, parse_time
from workers.errors import BackfireError, MediaError, SourceUnavailable
from workers.live.lag import Lag, Metrics, fmt_s
from workers.net.guard import FetchPolicy
from workers.sources.live import Batch, LiveSource, Stopped
from workers.store import Database, open_database
from workers.store import watch as cursors
from workers.store.models import PostRow
from workers.store.watch import WATCH_OWNER

if TYPE_CHECKING:
    from workers.media.fetcher import MediaFetcher
    from workers.scoring.pipeline import Pipeline
    from workers.scoring.runner import Runner
    from workers.scoring.writers import Writer

#: A quiet watcher still prints a line this often, so a terminal shows it is alive.
HEARTBEAT_S = 60.0
#: The run's scene cache is started afresh past this many images (a long watch stays small).
MAX_CACHED_IMAGES = 20_000


@dataclass
class WatchOptions:
    every_s: float = 30.0
    duration_s: float | None = None
    out: Path | None = None
    out_format: str = "jsonl"
    report: Path | None = None
    report_every_s: float = 300.0
    queue: bool = False
    metrics_port: int | None = None
    #: The rolling window the progress line's backlash share is taken over.
    window_s: int = 1800
    #: Give up waiting for the workers' verdicts of posts handed over this long ago (--queue).
    queue_timeout_s: float = 3600.0


@dataclass
class Fired:
    """An alert the watcher delivered (or tried to), for the console and the report."""

    at: str
    payload: dict[str, Any]
    state: str


@dataclass
class Totals:
    posts: int = 0
    ok: int = 0
    failed: int = 0
    polls: int = 0
    poll_errors: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


class Watcher:
    def __init__(
        self,
        settings: Settings,
        source: LiveSource,
        options: WatchOptions,
        console: Console,
        *,
        stop: threading.Event | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.options = options
        self.console = console
        self.stop = stop or threading.Event()
        self.pipeline = pipeline
        self.policy = FetchPolicy.from_settings(settings)
        self.lag = Lag()
        self.metrics = Metrics(source.platform, source.query_key)
        self.totals = Totals()
        self.fired: list[Fired] = []
        #: (created_at, is backlash) of recent verdicts, for the progress line's share.
        self.recent: deque[tuple[float, bool]] = deque()
        self._new_since_line = 0
        self._last_line = 0.0
        self._pending: dict[int, tuple[float, float | None]] = {}  # --queue: seq -> (seen, created)
        self._timers: list[threading.Timer] = []
        self.db: Database | None = None
        self.writer: Writer | None = None
        self._written: set[str] = set()
        self._runner: Runner | None = None
        self._queue_fetcher: MediaFetcher | None = None
        self._cache_from = 0

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> Totals:
        opts = self.options
        self.db = open_database(self.settings)
        try:
            self._start()
            cursor = cursors.load_cursor(self.db, self.source.source_key, self.source.query_key)
            where = "from the saved cursor" if cursor else "from the newest posts"
            self.console.print(
                f"Watching {self.source.platform} {self._what()} every "
                f"{opts.every_s:g} s {where}"
                + (" → workers (--queue)" if opts.queue else f"; pipeline {self._version()}"),
                soft_wrap=True,
            )
            started = time.monotonic()
            next_report = started
            # --for: the deadline also cuts the wait for the next poll short, so `--for 3s
            # --every 30s` ends after about 3 s, not after the first 30 s wait.
            deadline = started + opts.duration_s if opts.duration_s is not None else None
            while not self.stop.is_set():
                began = time.monotonic()
                cursor = self._poll(cursor)
                if opts.queue:
                    self._collect_finished()
                self._progress()
                if opts.report is not None and time.monotonic() >= next_report:
                    self.write_report()
                    next_report = time.monotonic() + opts.report_every_s
                wait = opts.every_s - (time.monotonic() - began)
                if deadline is not None:
                    if time.monotonic() >= deadline:
                        break
                    wait = min(wait, deadline - time.monotonic())
                self.stop.wait(max(0.0, wait))
            if opts.queue:
                self._drain_queue()
            self._progress(final=True)
            if opts.report is not None:
                self.write_report()
            return self.totals
        finally:
            for t in self._timers:
                t.join(timeout=self.settings.alert_timeout_s)
            if self.writer is not None:
                self.writer.close()
            if self._runner is not None and self._runner.fetcher is not None:
                self._runner.fetcher.close()
            if self._queue_fetcher is not None:
                self._queue_fetcher.close()
            self.db.dispose()

    def _what(self) -> str:
        tag = f"#{self.source.hashtag}" if self.source.hashtag else ""
        return tag if self.source.query_key.lower() in (tag.lower(), tag[1:].lower()) else (
            f"{self.source.query_key!r} {tag}".strip()
        )

    def _version(self) -> str:
        return self.pipeline.version if self.pipeline is not None else "?"

    def _start(self) -> None:
        from workers.scoring.writers import done_post_ids, open_writer

        opts = self.options
        if not opts.queue:
            self._runner = self._make_runner()
        if opts.out is not None:
            # Rows are written before their commit, so a row may be in the file while its post
            # is scored again after a kill: the file's own ids keep it to one row per post.
            self._written = done_post_ids(opts.out, opts.out_format)
            names = self._scene_names()
            self.writer = open_writer(opts.out, opts.out_format, names, append=True)
        if opts.metrics_port is not None:
            self.metrics.serve(opts.metrics_port)
            self.console.print(f"Metrics on http://127.0.0.1:{opts.metrics_port}/metrics")

    def _scene_names(self) -> list[str]:
        if self.pipeline is not None:
            return list(self.pipeline.scenes.names)
        from workers.scenes.prompts import load_prompt_set

        return load_prompt_set(self.settings.scenes_file).names

    def _make_runner(self) -> Runner:
        from workers.media.fetcher import FetcherConfig, MediaFetcher
        from workers.scoring.pipeline import Pipeline
        from workers.scoring.runner import Runner

        if self.pipeline is None:
            with self.console.status("Loading the scene model…", spinner="dots"):
                self.pipeline = Pipeline.from_settings(self.settings)
        fetcher = MediaFetcher(self.policy, FetcherConfig.from_settings(self.settings))
        return Runner(
            self.pipeline, self.policy, self.settings.loader_threads, fetcher=fetcher,
            fetch_ahead=self.settings.fetch_ahead,
            on_problem=lambda p: self.console.print(f"[yellow]skipped[/] {p.location}: "
                                                    f"{p.message}", soft_wrap=True),
        )  # fmt: skip

    def _poll(self, cursor: dict[str, Any] | None) -> dict[str, Any] | None:
        error = False
        try:
            for batch in self.source.poll(cursor):
                self._handle(batch)
                cursor = batch.cursor
                if self.stop.is_set():
                    break  # the batch in hand is finished and its cursor saved
        except Stopped:
            pass
        except SourceUnavailable as e:
            error = True
            self.totals.poll_errors += 1
            self.console.print(f"[yellow]poll failed[/]: {e.message}; next poll in "
                               f"{self.options.every_s:g} s", soft_wrap=True)  # fmt: skip
        for problem in self.source.problems[:20]:
            self.console.print(f"[yellow]skipped[/] {problem.location}: {problem.message}",
                               soft_wrap=True)  # fmt: skip
        self.source.problems.clear()
        self.totals.polls += 1
        self.metrics.polled(self.source.behind, error)
        self.lag.close_poll()
        return cursor

    # --- one batch ---------------------------------------------------------------------------
    def _handle(self, batch: Batch) -> None:
        assert self.db is not None
        if batch.posts:
            if self.options.queue:
                self._hand_over(batch)
            else:
                self._score(batch)
        cursors.save_cursor(self.db, self.source.source_key, self.source.query_key, batch.cursor)

    def _score(self, batch: Batch) -> None:
        assert self.db is not None and self._runner is not None and self.pipeline is not None
        version = self.pipeline.version
        done = cursors.scored_among(
            self.db, WATCH_OWNER, [p.post_id for p in batch.posts], version
        )
        todo = [p for p in batch.posts if p.post_id not in done]
        if not todo:
            return
        if self._runner.stats.images_scored - self._cache_from > MAX_CACHED_IMAGES:
            from workers.scoring.pipeline import MemorySceneCache

            self._runner.cache = MemorySceneCache()
            self._cache_from = self._runner.stats.images_scored
        records: list[dict[str, Any]] = []
        self._runner.run(todo, records.append)
        thresholds = {n: s.threshold for n, s in self.pipeline.scenes.prompts.scenes.items()}
        rows = []
        for rec in records:
            row = ResultRow.from_record(rec)
            detected = sorted(
                n for n, p in (row.scenes or {}).items() if p >= thresholds.get(n, 1.0)
            )
            rows.append((row, detected))
            self._write(rec)
        seen = datetime.fromtimestamp(batch.seen_at, UTC)
        stored = cursors.store_results(self.db, WATCH_OWNER, rows, version, accepted_at=seen)
        self._arrived([r for r, _ in rows], batch.seen_at)
        self._alerts([s.post for s in stored if s.post.status == "done"])

    def _write(self, rec: dict[str, Any]) -> None:
        if self.writer is not None and rec["post_id"] not in self._written:
            self.writer.write(rec)
            self._written.add(rec["post_id"])

    def _arrived(self, rows: list[ResultRow], seen_at: float) -> None:
        """Lag and totals for rows whose verdicts are now stored."""
        now = time.time()
        horizon = now - self.options.window_s
        for row in rows:
            created = parse_time(row.created_at)
            c_lag = now - created.timestamp() if created is not None else None
            self.lag.add(c_lag, now - seen_at)
            self.metrics.observe("ok" if row.ok else "failed", c_lag, now - seen_at)
            self.totals.posts += 1
            self._new_since_line += 1
            if row.ok:
                self.totals.ok += 1
                label = row.verdict or "?"
                self.totals.verdicts[label] = self.totals.verdicts.get(label, 0) + 1
                t = created.timestamp() if created is not None else now
                self.recent.append((t, label == "backlash"))
            else:
                self.totals.failed += 1
        while self.recent and self.recent[0][0] < horizon:
            self.recent.popleft()

    # --- alerts ------------------------------------------------------------------------------
    def _alerts(self, posts: list[PostRow]) -> None:
        """Evaluate the rules these posts can move (the workers' own evaluation, on the window
        read from the store) and deliver what fires."""
        if not posts:
            return
        from workers.notify.watch import evaluate_for

        assert self.db is not None
        # The earliest post of the batch: the window of every post after it is re-read.
        first = min(posts, key=lambda p: p.posted_at)
        try:
            for delivery_id in evaluate_for(self.db, first):
                self._deliver(delivery_id, 1)
        except (BackfireError, SQLAlchemyError) as e:
            # The verdicts are stored; the next batch evaluates the rules again from their
            # saved state, so a crossing is not lost, only late.
            self.console.print(f"[yellow]alerts not evaluated[/]: {e}", soft_wrap=True)

    def _deliver(self, delivery_id: int, attempt: int) -> None:
        from workers.notify.watch import send_delivery
        from workers.store import alerts as alert_store

        assert self.db is not None
        got = alert_store.get_delivery(self.db, delivery_id)
        outcome, delay = send_delivery(self.settings, self.db, delivery_id, attempt)
        if got is None:
            return
        payload = got[0].payload
        if attempt == 1:
            self.fired.append(Fired(iso_utc(datetime.now(UTC)) or "", payload, outcome))
        state = f"retrying in {delay:.1f} s" if delay is not None else outcome
        self.console.print(
            f"[bold red]ALERT[/] #{payload['hashtag']}: {payload['share']:.0%} of the "
            f"{payload['posts']} posts in the last {payload['window']} are backlash (threshold "
            f"{payload['threshold']:.0%}; crossing post at {payload['window_end']}) → "
            f"{state}", soft_wrap=True,
        )  # fmt: skip
        self.metrics.alerts.labels(**self.metrics.labels, state=outcome).inc()
        if self.fired and self.fired[-1].payload.get("rule_id") == payload.get("rule_id"):
            self.fired[-1].state = outcome
        if delay is not None:
            timer = threading.Timer(delay, partial(self._deliver, delivery_id, attempt + 1))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    # --- --queue -----------------------------------------------------------------------------
    def _ingest(self) -> Any:
        if not hasattr(self, "_ingest_obj"):
            from workers.media.decode import DecodeLimits
            from workers.queue.app import create_app
            from workers.queue.ingest import Ingest
            from workers.queue.publish import Publisher
            from workers.store.blobs import BlobStore

            assert self.db is not None
            self._ingest_obj = Ingest(
                self.db, BlobStore(self.settings.resolved_media_dir),
                Publisher(create_app(self.settings), self.db, 0.0), self.policy,
                DecodeLimits(max_pixels=self.settings.max_image_pixels),
            )  # fmt: skip
        return self._ingest_obj

    def _fetcher_for_queue(self) -> MediaFetcher:
        if self._queue_fetcher is None:
            import dataclasses

            from workers.media.fetcher import FetcherConfig, MediaFetcher

            config = FetcherConfig.from_settings(self.settings)
            bound = self.settings.watch_fetch_concurrency
            self._queue_fetcher = MediaFetcher(self.policy, dataclasses.replace(
                config, concurrency=bound, per_host=min(config.per_host, bound)))  # fmt: skip
        return self._queue_fetcher

    def _hand_over(self, batch: Batch) -> None:
        """Each post in through the one ingest path (stored, then enqueued); the workers score
        it and evaluate the alert rules. A post whose image cannot be read is stored failed."""
        from workers.store import posts as repo

        assert self.db is not None
        failed: list[tuple[ResultRow, list[str]]] = []
        # The page's images are downloaded at once (a small bound, through the concurrent
        # fetcher and its SSRF guard) while the posts go through ingest one by one, in order:
        # a page of 40 no longer waits for 40 round trips in a row. A post found already stored
        # (a page polled again after a restart) costs a download it does not use.
        fetcher = self._fetcher_for_queue()
        media = [fetcher.submit(p.image) for p in batch.posts]
        for p, image in zip(batch.posts, media, strict=True):
            new = repo.NewPost(
                owner=WATCH_OWNER, media_sha256="", post_id=p.post_id, caption=p.caption,
                hashtag=p.hashtag, created_at=p.created_at, author=p.author, image_url=p.image,
            )  # fmt: skip
            try:
                row, created = self._ingest().accept(new, image.result)
            except MediaError as e:
                failed.append((PostResult(p, None, error=e.as_record()).row(), []))
                continue
            if created:
                created_at = parse_time(p.created_at)
                self._pending[row.seq] = (
                    batch.seen_at, created_at.timestamp() if created_at else None
                )
        if failed:
            cursors.store_results(self.db, WATCH_OWNER, failed, "ingest")
            for r, _ in failed:
                self._write(r.as_record())
            self._arrived([r for r, _ in failed], batch.seen_at)
        self.metrics.pending.labels(**self.metrics.labels).set(len(self._pending))

    def _collect_finished(self) -> None:
        from workers.store import posts as repo
        from workers.store.views import result_row

        assert self.db is not None
        if not self._pending:
            return
        done = repo.finished_among(self.db, sorted(self._pending))
        by_seen: dict[float, list[ResultRow]] = {}
        for seq in sorted(done):
            seen, _created = self._pending.pop(seq)
            view = repo.get_by_seq(self.db, seq)
            row = result_row(view.post, view.verdict) if view is not None else None
            if row is not None:
                self._write(row.as_record())
                by_seen.setdefault(seen, []).append(row)
        for seen, rows in by_seen.items():
            self._arrived(rows, seen)
        self.metrics.pending.labels(**self.metrics.labels).set(len(self._pending))

    def _drain_queue(self) -> None:
        """After a stop: wait a little for verdicts in flight, so the summary counts them."""
        deadline = time.monotonic() + min(10.0, self.options.queue_timeout_s)
        while self._pending and time.monotonic() < deadline:
            self._collect_finished()
            time.sleep(0.2)

    # --- output ------------------------------------------------------------------------------
    def _progress(self, final: bool = False) -> None:
        now = time.monotonic()
        if not (final or self._new_since_line or now - self._last_line >= HEARTBEAT_S):
            return
        self.console.print(self.progress_line(final), soft_wrap=True, highlight=False)
        self._new_since_line = 0
        self._last_line = now

    def progress_line(self, final: bool = False) -> str:
        t = self.totals
        f = self.lag.figures()
        backlash = sum(1 for _, b in self.recent if b)
        share = (
            f"backlash {backlash / len(self.recent):.0%} of {len(self.recent)} in the last "
            f"{format_duration(self.options.window_s)}" if self.recent else "no verdicts yet"
        )  # fmt: skip
        parts = [
            datetime.now(UTC).strftime("%H:%M:%S"),
            f"{'stopped: ' if final else ''}{t.posts} posts ({t.ok} scored, {t.failed} failed)"
            f" +{self._new_since_line} new",
            share,
            f"lag from post p50 {fmt_s(f['created_p50'])} p95 {fmt_s(f['created_p95'])}",
            f"from first seen p50 {fmt_s(f['seen_p50'])} p95 {fmt_s(f['seen_p95'])}",
        ]
        if self.options.queue:
            parts.append(f"queue depth {len(self._pending)}")
        if self.source.behind:
            parts.append("[bold yellow]BEHIND: more pages wait (next poll continues)[/]")
        elif self.lag.growing():
            parts.append("[bold yellow]FALLING BEHIND: lag growing[/]")
        if t.poll_errors:
            parts.append(f"{t.poll_errors} failed polls")
        return " · ".join(parts)

    def _alert_markers(self, tag: str) -> list[tuple[str, str]]:
        """Every recorded firing of a rule of the hashtag (this run's, an earlier run's, the
        workers'), at the crossing post's time, for the report's chart."""
        from workers.domain import hashtag_key
        from workers.store import alerts as alert_store

        assert self.db is not None
        out = []
        for rule, deliveries in alert_store.list_rules(self.db):
            if hashtag_key(rule.hashtag) != hashtag_key(tag):
                continue
            for d in deliveries:
                when = d.payload.get("window_end")
                if when:
                    out.append((str(when), f"alert {d.share:.0%} ({d.state})"))
        return out

    def write_report(self) -> None:
        """The campaign report from the store, written atomically (a browser reloading it
        never reads half a file)."""
        from workers.report import build_report
        from workers.report.store_rows import store_rows

        assert self.db is not None and self.options.report is not None
        tag = self.source.hashtag or ""
        rows = list(store_rows(self.db, self.settings, tag))
        markers = self._alert_markers(tag)
        _model, html = build_report(
            rows, settings=self.settings, title=f"#{tag} (live)" if tag else None,
            scored_at=datetime.now(UTC).strftime("%-d %b %Y %H:%M:%S UTC"),
            markers=markers,
        )  # fmt: skip
        atomic_write_text(self.options.report, html)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_stop_handlers(stop: threading.Event, console: Console) -> Callable[[], None]:
    """SIGINT/SIGTERM set `stop` (the batch in hand is finished, its cursor saved); a second
    SIGINT interrupts at once. Returns a function restoring the previous handlers."""
    import signal

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        console.print("Stopping: finishing the batch in hand and saving the cursor…")

    for s in previous:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
