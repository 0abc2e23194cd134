"""Images for the report: safe loading, JPEG data-URI thumbnails, and dHash near-duplicates.

Images are untrusted like everywhere else: bytes go through `read_media` (byte cap, SSRF-safe
fetcher for URLs) and `decode_image` (format allow-list, bomb guard). URLs are fetched only when
the caller asks (`fetch=True`): opening a report must never make the machine that renders it
talk to hosts chosen by whoever posted. A missing or bad image is a placeholder, never a crash.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from workers.domain import ResultRow
from workers.errors import BackfireError
from workers.media.decode import DecodeLimits, decode_image
from workers.media.source import is_url, read_media
from workers.net.guard import FetchPolicy
from workers.store.blobs import BlobStore

THUMB_SIDE = 160
THUMB_QUALITY = 68
#: dHash bits that may differ for two images to count as the same photo. 64-bit hash; re-encodes
#: land at 0-4, small crops and resizes at 4-10, unrelated photos around 32.
NEAR_DUP_BITS = 10
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass
class ImageLoader:
    """Loads each referenced image once, reduced to a small size, and remembers failures."""

    policy: FetchPolicy
    fetch: bool = False
    base_dir: Path | None = None
    #: The decoder's bounds (pixels, sides, aspect ratio) at thumbnail size.
    limits: DecodeLimits = DecodeLimits(target_size=THUMB_SIDE)
    #: The media store: a row's image is read from it by sha256 when it holds the bytes.
    blobs: BlobStore | None = None
    _cache: dict[str, Image.Image | None] = field(default_factory=dict)

    def load_row(self, row: ResultRow) -> Image.Image | None:
        """The row's picture: from the media store when it has the bytes, else its reference."""
        if self.blobs is not None and row.media_sha256:
            try:
                path = self.blobs.path(row.media_sha256)
            except ValueError:  # not a sha256 (a hand-edited file): use the reference
                path = None
            if path is not None and path.is_file():
                return self.load(str(path))
        return self.load(row.image)

    def load(self, ref: str | None) -> Image.Image | None:
        if not ref:
            return None
        if ref in self._cache:
            return self._cache[ref]
        img: Image.Image | None = None
        if not is_url(ref) or self.fetch:
            try:
                data = read_media(self._resolve(ref), self.policy)
                img = decode_image(data, self.limits)
                img.thumbnail((2 * THUMB_SIDE, 2 * THUMB_SIDE))
            except BackfireError:
                img = None
            except (OSError, ValueError):  # anything Pillow raises past the decoder's own checks
                img = None
        self._cache[ref] = img
        return img

    def _resolve(self, ref: str) -> str:
        # Manifests often hold paths relative to themselves; the report may run from elsewhere.
        if is_url(ref) or self.base_dir is None:
            return ref
        p = Path(ref)
        if not p.is_absolute() and not p.exists() and (self.base_dir / p).exists():
            return str(self.base_dir / p)
        return ref


def thumbnail_uri(img: Image.Image, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> str:
    """A small JPEG as a data: URI (≈ 4-8 KB for a 160 px photo)."""
    t = img.copy()
    t.thumbnail((side, side))
    buf = io.BytesIO()
    t.save(buf, "JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9×8 grey thumbnail brighter than its right
    neighbour. Robust to re-encoding, resizing and small crops; cheap (no FFT)."""
    g = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicate_clusters(
    hashes: dict[str, int], max_bits: int = NEAR_DUP_BITS
) -> dict[str, str]:
    """Union-find over pairs within `max_bits` Hamming distance → {key: cluster key}.

    Pairwise in numpy blocks: 2,000 hashes are 4 M comparisons, a few tens of milliseconds.
    """
    keys = list(hashes)
    if len(keys) < 2:
        return {k: k for k in keys}
    h = np.array([hashes[k] for k in keys], dtype=np.uint64)
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    block = 512
    for s in range(0, len(h), block):
        x = h[s : s + block, None] ^ h[None, :]
        dist = _POPCOUNT[x.view(np.uint8)].reshape(x.shape[0], x.shape[1], 8).sum(-1)
        close = np.argwhere(dist <= max_bits)
        for i, j in close:
            a, b = find(s + int(i)), find(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {k: keys[find(i)] for i, k in enumerate(keys)}


def hash_images(loader: ImageLoader, rows: Iterable[tuple[str, ResultRow]]) -> dict[str, int]:
    """dHash of each (key, row) whose image loads; the others are left out (no cluster)."""
    out: dict[str, int] = {}
    for key, row in rows:
        img = loader.load_row(row)
        if img is not None:
            out[key] = dhash(img)
    return out
