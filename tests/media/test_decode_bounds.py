"""Issue 15, rows 1 and 10 at the decoder: geometry bounds (a 208-byte strip PNG took a worker to
15.5 GB), the pixel check at upload, large ICC profiles, refusals that name the format."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import image_bytes
from workers.config import Settings
from workers.errors import (
    CorruptImage,
    ImageTooElongated,
    ImageTooLarge,
    MediaError,
    TruncatedImage,
    UnsupportedFormat,
)
from workers.media.decode import (
    DecodeLimits,
    check_image,
    decode_image,
    resized_size,
    sniff_format,
)


def _png(img: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0"))


# --- row 1: geometry ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 65000), (65000, 1), (1, 10000), (3, 400)])
def test_strip_images_are_refused_from_the_header(size):
    data = _png(Image.new("L", size))
    assert len(data) < 2000  # the bomb is tiny on the wire
    for check in (decode_image, check_image):
        with pytest.raises(ImageTooElongated) as ei:
            check(data)
        assert ei.value.code == "image-too-elongated" and ei.value.http_status == 422
        assert f"{size[0]:,}×{size[1]:,}" in ei.value.message and "50:1" in ei.value.message


@pytest.mark.parametrize(
    ("size", "ok"),
    [((1, 50), True), ((50, 1), True), ((224, 11200), True), ((11200, 224), True),
     ((1, 51), False), ((224, 11250), False), ((100, 5001), False)],
)  # fmt: skip
def test_aspect_limit_bounds_the_resized_picture(size, ok):
    """What the model's resize makes of any accepted image stays under 224 × 11,200 px."""
    limits = DecodeLimits()
    data = _png(Image.new("L", size, 128))
    if not ok:
        with pytest.raises(ImageTooElongated):
            decode_image(data, limits)
        return
    out = decode_image(data, limits)
    rw, rh = resized_size(out.size, limits.target_size)
    assert rw * rh <= limits.max_resized_pixels == 224 * 11200


def test_a_side_over_the_limit_is_refused_even_when_the_pixel_count_is_fine():
    data = _png_header_only(30_001, 1_000)  # 30 M px: under the 60 M px limit
    for check in (check_image, decode_image):
        with pytest.raises(ImageTooLarge, match="30,000 px"):
            check(data)
        # At the limit the header passes; only the missing pixels are refused.
        with pytest.raises(TruncatedImage):
            check(_png_header_only(30_000, 1_000))


def test_bounds_come_from_the_settings():
    settings = Settings(max_image_side=400, max_image_aspect=4.0, max_image_pixels=10_000_000)
    limits = DecodeLimits.from_settings(settings, target_size=64)
    assert (limits.max_side, limits.max_aspect, limits.max_pixels) == (400, 4.0, 10_000_000)
    with pytest.raises(ImageTooElongated, match="4:1"):
        decode_image(image_bytes(size=(300, 60)), limits)
    with pytest.raises(ImageTooLarge, match="400 px"):
        decode_image(image_bytes(size=(401, 300)), limits)
    assert decode_image(image_bytes(size=(240, 60)), limits).size == (240, 60)


def test_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKFIRE_MAX_IMAGE_SIDE", "1234")
    monkeypatch.setenv("BACKFIRE_MAX_IMAGE_ASPECT", "8")
    s = Settings()
    assert (s.max_image_side, s.max_image_aspect) == (1234, 8.0)


# --- row 10: the pixel check at upload ----------------------------------------------------------
def _noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(sum(size))
    shape = (size[1], size[0], len(mode)) if mode != "L" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode)


def _jpeg(img: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **save)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_pixels_are_refused_at_upload(fmt):
    data = _jpeg(_noise((320, 240))) if fmt == "JPEG" else _png(_noise((320, 240)))
    cut = data[: len(data) // 2]
    with pytest.raises(TruncatedImage, match="truncated"):
        check_image(cut)
    with pytest.raises(TruncatedImage):  # what a worker would have found, later
        decode_image(cut)


def test_progressive_jpeg_truncated_is_refused_at_upload():
    data = _jpeg(_noise((400, 300)), progressive=True)
    with pytest.raises(MediaError):
        check_image(data[: len(data) * 2 // 3])


def test_damaged_png_stream_is_refused_at_upload():
    data = bytearray(_png(_noise((200, 150))))
    start = data.index(b"IDAT") + 4
    data[start + 100 : start + 400] = os.urandom(300)  # the CRC no longer matters to Pillow
    with pytest.raises(MediaError) as ei:
        check_image(bytes(data))
    assert isinstance(ei.value, CorruptImage | TruncatedImage) and "PNG" in ei.value.message
    with pytest.raises(MediaError):
        decode_image(bytes(data))


def test_png_row_with_unknown_filter_type_is_refused_at_upload():
    raw = b"".join(b"\x07" + bytes(range(30)) for _ in range(10))  # filter 7 does not exist
    ihdr = struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))  # fmt: skip
    with pytest.raises(CorruptImage, match="filter"):
        check_image(data)
    with pytest.raises(MediaError):
        decode_image(data)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _jpeg(_noise((640, 480))),
        lambda: _jpeg(_noise((640, 480)), progressive=True),
        lambda: _jpeg(Image.new("CMYK", (300, 200), (0, 255, 255, 0))),
        lambda: _jpeg(_noise((100, 80), "L")),
        lambda: _png(_noise((333, 201))),
        lambda: _png(_noise((333, 201)), interlace=1),  # Adam7: seven passes
        lambda: _png(Image.new("1", (37, 5))),
        lambda: _png(Image.new("P", (9, 400))),
        lambda: _png(Image.new("RGBA", (64, 64), (1, 2, 3, 4)), interlace=1),
        lambda: _png(Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))),
        lambda: _png(Image.new("LA", (3, 3))),
        lambda: _png(Image.new("L", (1, 1))),
    ],
)
def test_good_images_pass_the_upload_check(make):
    data = make()
    fmt, size = check_image(data)
    assert fmt == sniff_format(data) and size == Image.open(io.BytesIO(data)).size
    decode_image(data)


def test_png_with_a_2_mb_icc_profile_decodes():
    """Pillow refuses ICC profiles that inflate past 1 MiB by default, as if they were text
    bombs: such a photo was refused as "damaged"."""
    profile = os.urandom(2 * 1024 * 1024)  # incompressible: 2 MB in the file, 2 MB inflated
    data = _png(_noise((300, 200)), icc_profile=profile)
    assert check_image(data) == ("PNG", (300, 200))
    out = decode_image(data)
    assert out.size == (300, 200) and out.mode == "RGB"


def test_png_metadata_bomb_is_still_bounded():
    """The raised limit is still a limit: an ICC profile inflating to 64 MB is refused."""
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    bomb = _chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (64 * 1024 * 1024), 9))
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + bomb
            + _chunk(b"IDAT", zlib.compress(b"\0" * 72)) + _chunk(b"IEND", b""))  # fmt: skip
    assert len(data) < 100_000
    with pytest.raises(CorruptImage):
        decode_image(data)


# --- row 10: refusals that name the format ------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, "HEIC/HEIF photo"),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1" + b"\0" * 64, "AVIF image"),
        (b"8BPS\0\x01" + b"\0" * 64, "Photoshop document (PSD)"),
        (b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff" + b"\0" * 64 + b"This program", "PE executable"),
        (b"SIMPLE  =                    T / conforms to FITS" + b" " * 200, "FITS"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 64, "ELF executable"),
        (b"PK\x03\x04" + b"\0" * 64, "ZIP archive"),
        (b"hello, this is not a photo\n" * 10, "plain text"),
    ],
)
def test_refusals_name_the_actual_format(data, named):
    with pytest.raises(UnsupportedFormat) as ei:
        decode_image(data)
    msg = ei.value.message
    assert named in msg and "not a photo" not in msg, msg
    if named != "plain text":
        assert "text" not in msg.split("Accepted")[0]
    assert "Accepted image formats: JPEG, PNG" in msg


def test_binary_of_ascii_and_zeros_is_not_called_text():
    with pytest.raises(UnsupportedFormat) as ei:
        sniff_format(b"abc\0\0\0def\0" * 50)
    assert "text" not in ei.value.message and "unrecognised" in ei.value.message
