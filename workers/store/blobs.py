"""Content-addressed media store: bytes live at `media_dir/ab/cd/<sha256>`, shared by the API
and the workers. Identical images are stored once. Writes are atomic and durable (temp file,
fsync, rename), so a blob that exists is complete: the API commits a post's row only after its
blob is in place. A full disk is `StorageFull` (nothing half-written is left behind)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from pathlib import Path

from workers.errors import MediaNotFound, StorageFull

_SHA = re.compile(r"^[0-9a-f]{64}$")
#: Out of space, or over a quota: the same write succeeds again once room is made.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class BlobStore:
    def __init__(self, root: Path, full_retry_after_s: int = 30) -> None:
        self.root = root
        #: What a `StorageFull` suggests waiting (the API's Retry-After).
        self.full_retry_after_s = full_retry_after_s

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store `data`; returns its sha256. Storing the same bytes twice is a no-op."""
        try:
            return self._put(data)
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            raise StorageFull(
                f"The media store is full ({os.strerror(e.errno)}): nothing was stored; send the "
                "same request again later.",
                self.full_retry_after_s,
            ) from e

    def _put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        dest = self.path(sha)
        if dest.exists():
            return sha
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)  # atomic: readers see the whole blob or none
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)
        return sha

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as e:
            raise MediaNotFound(f"Media {sha256} is missing from the media store.") from e

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
