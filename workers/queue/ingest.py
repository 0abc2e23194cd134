"""The one way a post gets in, for the API (`POST /v1/posts`) and `backfire score --queue`:

    duplicate? -> bytes -> checks -> media store -> committed row -> publish

A post already known by its post id or Idempotency-Key is answered as it is, before any byte
is read (a re-sent post never downloads its image again). The image is sniffed and its header
checked without decoding pixels, so a bad upload fails here (415/422), not in a worker. The row
is committed before anything is published; a failed publish is left to the reconciler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.errors import InvalidRequest
from workers.media.decode import DecodeLimits, check_image
from workers.net.guard import FetchPolicy, check_url
from workers.queue.publish import Publisher
from workers.store import Database
from workers.store import posts as repo
from workers.store.blobs import BlobStore
from workers.store.models import TERMINAL, PostRow

#: The image bytes, or how to get them (read only when the post is new).
Media = bytes | Callable[[], bytes]


@dataclass
class Ingest:
    db: Database
    blobs: BlobStore
    publisher: Publisher
    fetch_policy: FetchPolicy
    decode_limits: DecodeLimits
    #: Webhook bodies are signed with it; without one, callbacks are refused.
    webhook_secret: str | None = None

    def accept(
        self, new: repo.NewPost, media: Media, *, resend: bool = False
    ) -> tuple[PostRow, bool]:
        """Store and enqueue `new`; returns (its row, created). `resend`: an existing post that
        is not finished is published again (a re-run of `score --queue` drives it on)."""
        # Bytes in hand (an upload) are checked before the lookup: a re-sent post id with a file
        # that is no image is refused as the same request without the earlier post would be,
        # not answered "duplicate". Lazy media (a `score --queue` re-run) is read only if new.
        data = media if isinstance(media, bytes) else None
        if data is not None:
            check_image(data, self.decode_limits)
        existing = repo.find_existing(self.db, new)
        if existing is not None:
            if resend and existing.status not in TERMINAL:
                self.publisher.publish([existing.seq], force=True)
            return existing, False
        if data is None:
            assert callable(media)  # not bytes, so the lazy kind
            data = media()
            check_image(data, self.decode_limits)
        if new.callback_url:
            if not self.webhook_secret:
                raise InvalidRequest(
                    "Webhooks are not enabled on this server (no signing secret is configured); "
                    "poll the status URL instead."
                )
            check_url(new.callback_url, self.fetch_policy)
        new.media_sha256 = self.blobs.put(data)
        # Stamp `enqueued_at` in the INSERT when a publish will be tried right after the commit
        # (one write transaction instead of two); the publisher clears it if the send fails.
        premark = not self.publisher.broker_down
        row, created = repo.create_post(self.db, new, enqueued=premark)
        if created:
            self.publisher.publish([row.seq], premarked=premark)
        elif resend and row.status not in TERMINAL:
            self.publisher.publish([row.seq], force=True)
        return row, created
