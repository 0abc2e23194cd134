"""Collapse reposts (retweets, reblogs, Bluesky reposts) onto the post they repeat.

A repost shows the same picture and words as its original; scoring it again would count one
photo as many verdicts. Each original is emitted once, carrying how many reposts of it the export
holds (`extra["reposts"]`) and the first few repost ids (`extra["repost_ids"]`).

Readers describe each record as an `Item`; `collapse` reads the export twice (the first pass
only counts reposts, so memory holds ids and counts, never posts) because a search export lists
reposts before or after their original in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from workers.domain import Post
from workers.sources import ReadProblem, Record

#: Repost ids kept per original, for reports; the count is always exact.
MAX_REPOST_IDS = 20


@dataclass(frozen=True)
class Item:
    """One export record: a post, or a repost of `post` (the original), or a repost of a post
    whose content the record does not carry (`post` None, `original_id` set)."""

    post: Post | None
    repost_id: str | None = None
    original_id: str | None = None

    @property
    def target(self) -> str:
        return self.post.post_id if self.post is not None else str(self.original_id)


def collapse(items: Callable[[], Iterator[Item | ReadProblem]]) -> Iterator[Record]:
    """Posts from `items()` with reposts folded into their originals (see module doc)."""
    reposts: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    own: set[str] = set()  # originals that have a record of their own in the export
    for it in items():
        if isinstance(it, ReadProblem):
            continue
        if it.repost_id is None:
            own.add(it.target)
            continue
        counts[it.target] = counts.get(it.target, 0) + 1
        ids = reposts.setdefault(it.target, [])
        if len(ids) < MAX_REPOST_IDS:
            ids.append(it.repost_id)

    emitted: set[str] = set()
    for it in items():
        if isinstance(it, ReadProblem):
            yield it
            continue
        if it.post is None:
            continue  # a repost of something the export does not show: counted, not scored
        pid = it.post.post_id
        if pid in emitted or (it.repost_id is not None and pid in own):
            continue  # the original's own record (or its first repost) stands for it
        emitted.add(pid)
        n = counts.get(pid, 0)
        if n:
            extra = {**it.post.extra, "reposts": n, "repost_ids": reposts[pid]}
            yield replace(it.post, extra=extra)
        else:
            yield it.post


def page_records(items: Iterable[Item | ReadProblem]) -> list[Record]:
    """The records of one API page, for the live pollers (workers/sources/live/): each post
    once, a repost standing for the post it repeats (the store keeps one verdict per post id,
    so a later repost of a scored post costs nothing). A repost whose original the page does
    not carry is dropped: there is nothing to look at."""
    out: list[Record] = []
    emitted: set[str] = set()
    for it in items:
        if isinstance(it, ReadProblem):
            out.append(it)
        elif it.post is not None and it.post.post_id not in emitted:
            emitted.add(it.post.post_id)
            out.append(it.post)
    return out
