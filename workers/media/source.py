"""Get a post's image bytes from where its `image` points: a local file or an http(s) URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workers.errors import FetchTooLarge, MediaNotFound

if TYPE_CHECKING:
    from workers.net.guard import FetchPolicy


def is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def read_media(ref: str | None, policy: FetchPolicy) -> bytes:
    """The bytes behind `ref`. Raises a `MediaError` subclass naming the reference."""
    if not ref:
        raise MediaNotFound("The post has no image.")
    if is_url(ref):
        from workers.net.fetch import fetch_url

        return fetch_url(ref, policy).data
    path = Path(ref)
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise FetchTooLarge(
                f"{path} is {size:,} bytes, over the limit of {policy.max_bytes:,} bytes."
            )
        return path.read_bytes()
    except FileNotFoundError as e:
        raise MediaNotFound(f"Image file not found: {path}") from e
    except IsADirectoryError as e:
        raise MediaNotFound(f"Image path is a folder, not a file: {path}") from e
    except PermissionError as e:
        raise MediaNotFound(f"Image file is not readable (permission denied): {path}") from e
