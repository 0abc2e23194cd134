"""Repository functions for posts and verdicts: the only code that writes their rows."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Row, Select, Table, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from workers.domain import parse_time
from workers.errors import NotFound
from workers.store.db import Database
from workers.store.models import TERMINAL, PostRow, SceneCacheRow, VerdictRow, utcnow


@dataclass
class NewPost:
    owner: str
    media_sha256: str
    post_id: str | None = None
    idempotency_key: str | None = None
    caption: str = ""
    hashtag: str | None = None
    created_at: str | None = None
    author: str | None = None
    image_url: str | None = None
    callback_url: str | None = None


@dataclass
class PostView:
    """A post with its current verdict row (if any), detached from the session."""

    post: PostRow
    verdict: VerdictRow | None = None


def _find_existing(s: Any, new: NewPost) -> PostRow | None:
    conds = []
    if new.post_id:
        conds.append(PostRow.post_id == new.post_id)
    if new.idempotency_key:
        conds.append(PostRow.idempotency_key == new.idempotency_key)
    if not conds:
        return None
    return s.scalars(select(PostRow).where(PostRow.owner == new.owner, or_(*conds))).first()


def find_existing(db: Database, new: NewPost) -> PostRow | None:
    if not (new.post_id or new.idempotency_key):
        return None  # nothing to match on: no session, no transaction
    with db.read() as s:
        return _find_existing(s, new)


_POSTS = cast(Table, PostRow.__table__)


def create_post(db: Database, new: NewPost, *, enqueued: bool = False) -> tuple[PostRow, bool]:
    """Insert the post, or return the existing one with the same post id / idempotency key.
    Returns (row, created). Committed when this returns. `enqueued=True` stamps `enqueued_at`
    in the same statement, for a caller that publishes right after the commit (and calls
    `mark_enqueued(..., sent=False)` if that fails): one write transaction per upload, not two.

    A Core INSERT, not the ORM unit of work: this runs once per upload (hot path). The row
    returned is a transient `PostRow` carrying the inserted values and `seq`."""
    now = utcnow()
    public_id = secrets.token_hex(12)
    values: dict[str, Any] = {
        "id": public_id,
        "owner": new.owner,
        "post_id": new.post_id or public_id,
        "idempotency_key": new.idempotency_key,
        "hashtag": new.hashtag,
        "caption": new.caption or "",
        "author": new.author,
        "created_at": new.created_at,
        "posted_at": parse_time(new.created_at) or now,
        "image_url": new.image_url,
        "callback_url": new.callback_url,
        "media_sha256": new.media_sha256,
        "status": "queued",
        "attempts": 0,
        "accepted_at": now,
        "touched_at": now,
        "enqueued_at": now if enqueued else None,
        "webhook_status": "pending" if new.callback_url else None,
        "webhook_attempts": 0,
    }
    conds = []
    if new.post_id:
        conds.append(_POSTS.c.post_id == new.post_id)
    if new.idempotency_key:
        conds.append(_POSTS.c.idempotency_key == new.idempotency_key)
    try:
        with db.write_conn() as conn:
            if (
                conds
                and conn.execute(
                    select(_POSTS.c.seq).where(_POSTS.c.owner == new.owner, or_(*conds)).limit(1)
                ).first()
            ):
                seq = None
            else:
                # One row inserted: its key is always there (typed Optional for executemany).
                seq = cast(Row[Any], conn.execute(insert(_POSTS), values).inserted_primary_key)[0]
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its post.
        existing = find_existing(db, new)
        if existing is None:
            raise
        return existing, False
    if seq is None:
        existing = find_existing(db, new)  # committed before our transaction began: still there
        assert existing is not None
        return existing, False
    return PostRow(seq=seq, **values), True


def mark_enqueued(db: Database, seqs: list[int], *, sent: bool = True) -> None:
    """Stamp `enqueued_at` on posts just published (`sent=False`: clear it again, for posts
    stamped at insert whose publish then failed; the reconciler sends those later)."""
    now = utcnow()
    values: dict[str, Any] = (
        {"enqueued_at": now, "touched_at": now} if sent else {"enqueued_at": None}
    )
    # One UPDATE statement, no ORM load: this runs after every upload (hot path).
    with db.write_conn() as conn:
        conn.execute(update(_POSTS).where(_POSTS.c.seq.in_(seqs)).values(**values))


def _current_verdict(s: Any, post: PostRow) -> VerdictRow | None:
    if post.pipeline_version is None:
        return None
    return s.scalars(
        select(VerdictRow).where(
            VerdictRow.post_seq == post.seq, VerdictRow.pipeline_version == post.pipeline_version
        )
    ).first()


def get_post(db: Database, owner: str | None, public_id: str) -> PostView:
    """The post with `public_id` owned by `owner` (any owner if None); 404 otherwise, so other
    tenants' posts are indistinguishable from missing ones."""
    with db.read() as s:
        q = select(PostRow).where(PostRow.id == public_id)
        if owner is not None:
            q = q.where(PostRow.owner == owner)
        row = s.scalars(q).first()
        if row is None:
            raise NotFound(f"There is no post {public_id!r}.")
        return PostView(row, _current_verdict(s, row))


def get_by_seq(db: Database, seq: int) -> PostView | None:
    with db.read() as s:
        row = s.get(PostRow, seq)
        return None if row is None else PostView(row, _current_verdict(s, row))


def with_current_verdict() -> Select[PostRow, VerdictRow]:
    """Posts joined to their verdict for the post's current pipeline_version (None until
    scored): older verdicts of a re-scored post never leak into listings or reports."""
    return select(PostRow, VerdictRow).outerjoin(
        VerdictRow,
        and_(
            VerdictRow.post_seq == PostRow.seq,
            VerdictRow.pipeline_version == PostRow.pipeline_version,
        ),
    )


def list_posts(
    db: Database,
    owner: str,
    *,
    hashtag: str | None = None,
    verdict: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    review: bool | None = None,
    after_seq: int = 0,
    limit: int = 50,
) -> list[PostView]:
    with db.read() as s:
        q = (
            with_current_verdict()
            .where(PostRow.owner == owner, PostRow.seq > after_seq)
            .order_by(PostRow.seq)
            .limit(limit)
        )
        if hashtag:
            q = q.where(PostRow.hashtag == hashtag)
        if status:
            q = q.where(PostRow.status == status)
        if verdict:
            q = q.where(VerdictRow.verdict == verdict)
        if since:
            q = q.where(PostRow.posted_at >= since)
        if review is not None:
            q = q.where(VerdictRow.review.is_(True) if review else VerdictRow.review.isnot(True))
        return [PostView(p, v) for p, v in s.execute(q).all()]


@dataclass
class Summary:
    hashtag: str
    posts: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_verdict: dict[str, int] = field(default_factory=dict)
    by_scene: dict[str, int] = field(default_factory=dict)
    backlash_share: float | None = None
    first_post_at: datetime | None = None
    last_post_at: datetime | None = None


def summary(db: Database, owner: str, hashtag: str) -> Summary:
    out = Summary(hashtag)
    with db.read() as s:
        base = (PostRow.owner == owner, PostRow.hashtag == hashtag)
        for status, n in s.execute(
            select(PostRow.status, func.count()).where(*base).group_by(PostRow.status)
        ):
            out.by_status[status] = n
        out.posts = sum(out.by_status.values())
        out.first_post_at, out.last_post_at = s.execute(
            select(func.min(PostRow.posted_at), func.max(PostRow.posted_at)).where(*base)
        ).one()
        verdicts: Counter[str] = Counter()
        scenes: Counter[str] = Counter()
        rows = s.execute(
            select(VerdictRow.verdict, VerdictRow.detected)
            .join(PostRow, PostRow.seq == VerdictRow.post_seq)
            .where(*base, PostRow.pipeline_version == VerdictRow.pipeline_version)
        )
        for label, detected in rows:
            if label:
                verdicts[label] += 1
            scenes.update(detected or [])
    # SQLite's min/max over the type decorator come back as strings on some versions.
    for attr in ("first_post_at", "last_post_at"):
        v = getattr(out, attr)
        if isinstance(v, str):
            setattr(out, attr, parse_time(v))
    out.by_verdict = dict(verdicts)
    out.by_scene = dict(scenes)
    judged = sum(verdicts.values())
    out.backlash_share = round(verdicts["backlash"] / judged, 4) if judged else None
    return out


# --- the worker's side ---------------------------------------------------------------------------
Claim = Literal["run", "skip", "quarantined"]


def claim(db: Database, seq: int, version: str, max_attempts: int) -> Claim:
    """Start an attempt at scoring post `seq` (see `claim_row`)."""
    return claim_row(db, seq, version, max_attempts)[0]


def claim_row(
    db: Database, seq: int, version: str, max_attempts: int
) -> tuple[Claim, PostRow | None]:
    """Start an attempt at scoring post `seq`, counting it in the database first, so a worker
    killed mid-task leaves evidence: a post found `running` at `max_attempts` crashed that many
    times and is quarantined instead of crashing the next worker too. Returns the decision and
    the post as it stands after it (detached: the task's one read of the row)."""
    with db.write() as s:
        row = s.get(PostRow, seq, with_for_update=True)
        if row is None or row.status in TERMINAL:
            return "skip", row
        exists = s.scalars(
            select(VerdictRow.id).where(
                VerdictRow.post_seq == seq, VerdictRow.pipeline_version == version
            )
        ).first()
        now = utcnow()
        if exists is not None:  # verdict written but the status update was lost: finish it
            row.status, row.pipeline_version, row.finished_at = "done", version, now
            return "skip", row
        if row.status == "running" and row.attempts >= max_attempts:
            row.status = "quarantined"
            row.finished_at = row.touched_at = now
            row.last_error = {
                "type": "worker-crashed",
                "message": (
                    f"Scoring this post stopped its worker {row.attempts} times "
                    f"(last error: {(row.last_error or {}).get('message', 'process killed')}); "
                    "it is quarantined and will not be retried."
                ),
            }
            return "quarantined", row
        row.status = "running"
        row.attempts += 1
        row.touched_at = now
        return "run", row


Failure = Literal["retry", "quarantined", "skip"]


def record_failure(
    db: Database, seq: int, error: dict[str, str], max_attempts: int
) -> tuple[Failure, int]:
    """An unexpected exception ended this attempt (the worker survived). Keep the error; put the
    post back to `queued` for a retry, or quarantine it once it has used `max_attempts`.
    Returns (what to do, attempts so far)."""
    with db.write() as s:
        row = s.get(PostRow, seq, with_for_update=True)
        if row is None or row.status in TERMINAL:
            return "skip", 0 if row is None else row.attempts
        now = utcnow()
        row.touched_at = now
        if row.attempts >= max_attempts:
            row.status = "quarantined"
            row.finished_at = now
            row.last_error = {
                "type": "scoring-error",
                "message": (
                    f"Scoring this post failed {row.attempts} times (last error: "
                    f"{error['message']}); it is quarantined and will not be retried."
                ),
            }
            return "quarantined", row.attempts
        # `queued`, not `running`: nothing is working on it until the retry arrives, and a
        # later claim must not read this as a crash.
        row.status = "queued"
        row.last_error = error
        return "retry", row.attempts


def record_result(
    db: Database,
    seq: int,
    version: str,
    record: dict[str, Any],
    *,
    detected: list[str],
    scoring_s: float,
) -> bool:
    """Store the verdict (or error row) once per (post, pipeline_version) and finish the post.
    Returns False when another delivery got there first."""
    failed = record.get("error") is not None
    with db.write() as s:
        row = s.get(PostRow, seq, with_for_update=True)
        if row is None:
            return False
        written = True
        try:
            with s.begin_nested():
                s.add(
                    VerdictRow(
                        post_seq=seq,
                        pipeline_version=version,
                        record=record,
                        verdict=record.get("verdict"),
                        detected=detected,
                        scoring_s=scoring_s,
                        review=record.get("review"),
                    )
                )
        except IntegrityError:
            written = False
        if row.status not in TERMINAL:
            now = utcnow()
            row.status = "failed" if failed else "done"
            row.pipeline_version = version
            row.finished_at = row.touched_at = now
            row.last_error = record.get("error")
        return written


def cached_scenes(db: Database, sha: str, version: str) -> dict[str, float] | None:
    with db.read() as s:
        row = s.get(SceneCacheRow, (sha, version))
        return None if row is None else dict(row.scenes)


def cache_scenes(db: Database, sha: str, version: str, scenes: dict[str, float]) -> None:
    try:
        with db.write() as s:
            if s.get(SceneCacheRow, (sha, version)) is None:
                s.add(SceneCacheRow(media_sha256=sha, pipeline_version=version, scenes=scenes))
    except IntegrityError:
        pass  # the same image scored concurrently: either copy is right


def due_for_reconcile(db: Database, older_than_s: float, limit: int = 1000) -> list[int]:
    """Posts left queued/running longer than `older_than_s`: their message may be lost."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with db.read() as s:
        return list(
            s.scalars(
                select(PostRow.seq)
                .where(PostRow.status.in_(("queued", "running")), PostRow.touched_at < cutoff)
                .order_by(PostRow.seq)
                .limit(limit)
            )
        )


def finished_among(db: Database, seqs: list[int], chunk: int = 500) -> set[int]:
    """Which of `seqs` have reached a terminal status: one query per `chunk` posts, so waiting
    on a large batch does not cost a query per post per poll."""
    done: set[int] = set()
    with db.read() as s:
        for i in range(0, len(seqs), chunk):
            part = seqs[i : i + chunk]
            q = select(PostRow.seq).where(PostRow.seq.in_(part), PostRow.status.in_(TERMINAL))
            done.update(s.scalars(q).all())
    return done


def status_counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return dict(s.execute(select(PostRow.status, func.count()).group_by(PostRow.status)).all())


def scoring_totals(db: Database) -> tuple[int, float]:
    with db.read() as s:
        n, total = s.execute(select(func.count(), func.sum(VerdictRow.scoring_s))).one()
    return int(n or 0), float(total or 0.0)


def set_webhook_state(db: Database, seq: int, state: str, attempts: int) -> None:
    with db.write() as s:
        row = s.get(PostRow, seq)
        if row is not None:
            row.webhook_status = state
            row.webhook_attempts = attempts
