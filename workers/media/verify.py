"""Check a PNG's pixel data at upload without holding its pixels.

Why not let Pillow decode it: Pillow allocates the whole picture first (240 MB for a 60 MP
RGBA PNG that compresses to 60 KB), and the API checks uploads in a shared thread pool. Here the
image stream is inflated in pieces of at most `_PIECE` bytes and only its structure is checked,
the way Pillow's decoder reads it, so an upload that a worker could not decode is refused at
once: the concatenated IDAT data must inflate without a zlib error, must hold every row of the
first frame (all seven passes when interlaced) unless the zlib stream itself ends first on a
row boundary (Pillow then stops the picture there), and every complete row must start with a
known filter type (0-4). What follows the last needed byte is ignored, as Pillow ignores it.
"""

from __future__ import annotations

import struct
import zlib

from workers.errors import CorruptImage, TruncatedImage

_PIECE = 1 << 20
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type → samples per pixel
# Adam7 passes: (x0, y0, dx, dy).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # fmt: skip


def _rows(width: int, height: int, bits: int, interlaced: bool) -> list[tuple[int, int]]:
    """(bytes per row including its filter byte, number of rows) for each pass."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    out = []
    for x0, y0, dx, dy in passes:
        pw = (width - x0 + dx - 1) // dx if width > x0 else 0
        ph = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pw and ph:
            out.append((1 + (pw * bits + 7) // 8, ph))
    return out


def _idat_stream(data: bytes) -> tuple[bytes, list[memoryview]]:
    """The IHDR body and the first run of IDAT chunk bodies (cut short where the file ends,
    as a reader of a truncated file gets them)."""
    view = memoryview(data)
    pos, ihdr, pieces = 8, b"", []
    while pos + 8 <= len(data):
        length, tag = struct.unpack(">I4s", data[pos : pos + 8])
        body = view[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            ihdr = bytes(body)
        elif tag == b"IDAT":
            pieces.append(body)
        elif pieces:  # the first frame's data ended
            break
        pos += 12 + length
    return ihdr, pieces


def verify_png_pixels(data: bytes) -> None:
    """Raise `TruncatedImage` or `CorruptImage` if the PNG's first frame cannot be decoded.
    `data` has been opened by Pillow already (signature and IHDR are sane)."""
    ihdr, pieces = _idat_stream(data)
    if len(ihdr) < 13:
        raise CorruptImage("The PNG file's header chunk (IHDR) is damaged.")
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    if ctype not in _CHANNELS:
        raise CorruptImage(f"The PNG file declares an unknown colour type ({ctype}).")
    rows = _rows(width, height, _CHANNELS[ctype] * depth, interlace == 1)
    if not pieces:
        raise TruncatedImage("The PNG file is truncated: it has no image data.")

    inflater = zlib.decompressobj()
    pass_i, rows_left, row_len, in_row = 0, rows[0][1], rows[0][0], 0

    def consume(out: bytes) -> bool:
        """Walk `out` row by row; True once the last row of the last pass is complete."""
        nonlocal pass_i, rows_left, row_len, in_row
        i, n = 0, len(out)
        while i < n:
            if in_row == 0 and out[i] > 4:
                raise CorruptImage(
                    f"The PNG file is damaged: a row of pixels has an unknown filter type "
                    f"({out[i]})."
                )
            step = min(row_len - in_row, n - i)
            i += step
            in_row += step
            if in_row == row_len:
                in_row = 0
                rows_left -= 1
                if rows_left == 0:
                    pass_i += 1
                    if pass_i == len(rows):
                        return True
                    row_len, rows_left = rows[pass_i]
        return False

    try:
        for piece in pieces:
            for start in range(0, len(piece), _PIECE):
                chunk: bytes = bytes(piece[start : start + _PIECE])
                while chunk:
                    if consume(inflater.decompress(chunk, _PIECE)):
                        return
                    if inflater.eof:
                        if in_row == 0:
                            # The zlib stream ends on a row boundary before the last row:
                            # Pillow ends the picture there (the rest stays black) and a
                            # worker scores it, so the upload is accepted too.
                            return
                        raise TruncatedImage(
                            "The PNG file is truncated: its image data ends inside a row of pixels."
                        )
                    chunk = inflater.unconsumed_tail
        while True:  # output the inflater still holds back
            out = inflater.decompress(b"", _PIECE)
            if consume(out):
                return
            if not out:
                break
    except zlib.error as e:
        raise CorruptImage(
            f"The PNG file is damaged: its image data does not inflate ({e})."
        ) from e
    raise TruncatedImage("The PNG file is truncated: it ends before the picture is complete.")
