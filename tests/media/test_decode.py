"""Untrusted bytes → upright RGB, or a typed error a person understands."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import image_bytes
from workers.errors import (
    CorruptImage,
    EmptyImage,
    ImageTooLarge,
    MediaError,
    TruncatedImage,
    UnsupportedFormat,
)
from workers.media.decode import DecodeLimits, check_image, decode_image, sniff_format


# --- refusals ------------------------------------------------------------------------------------
def test_zero_bytes_is_empty():
    with pytest.raises(EmptyImage, match="empty"):
        decode_image(b"")


def test_truncated_jpeg():
    data = image_bytes(size=(640, 480))
    with pytest.raises(TruncatedImage, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_text_renamed_jpg_is_refused_as_text():
    with pytest.raises(UnsupportedFormat, match="text"):
        decode_image(b"hello, this is not a photo\n" * 10)


def test_svg_is_refused_by_name():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>'
    with pytest.raises(UnsupportedFormat, match="SVG"):
        decode_image(svg)


@pytest.mark.parametrize(
    ("data", "kind"), [(b"%PDF-1.7\n...", "PDF"), (b"%!PS-Adobe-3.0 EPSF-3.0\n", "EPS")]
)
def test_documents_are_refused_by_name(data, kind):
    with pytest.raises(UnsupportedFormat, match=kind):
        sniff_format(data)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that *declares* width×height but carries a tiny (invalid) body: a bomb's header."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def test_30000_square_png_header_refused_before_decoding():
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(_png_header_only(30000, 30000))
    with pytest.raises(ImageTooLarge):
        check_image(_png_header_only(30000, 30000))


def test_decompression_bomb_refused():
    # A real, highly compressible PNG just over the configured pixel limit.
    data = image_bytes(size=(3000, 3000), fmt="PNG")
    with pytest.raises(ImageTooLarge, match="limit"):
        decode_image(data, DecodeLimits(max_pixels=4_000_000))


def test_corrupt_exif_still_scores_the_pixels():
    """A photo whose EXIF block is garbage: the pixels are fine, so it decodes (unrotated)
    instead of failing the post."""
    img = Image.new("RGB", (300, 200), (10, 200, 30))
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\xde\xad\xbe\xef")
    out = decode_image(buf.getvalue())
    assert out.size == (300, 200)
    assert out.getpixel((150, 100))[1] > 150


def test_corrupt_body_after_valid_header():
    data = bytearray(image_bytes(size=(400, 300), fmt="PNG"))
    data[60:200] = b"\x00" * 140  # smash the compressed stream
    with pytest.raises(MediaError) as ei:
        decode_image(bytes(data))
    assert isinstance(ei.value, CorruptImage | TruncatedImage)
    assert "PNG" in ei.value.message


# --- good odd inputs ----------------------------------------------------------------------
def _rgb_at(img: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.asarray(img)[xy[1], xy[0]])


def test_cmyk_jpeg_to_rgb():
    buf = io.BytesIO()
    Image.new("CMYK", (300, 300), (0, 255, 255, 0)).save(buf, "JPEG")  # pure red in CMYK
    out = decode_image(buf.getvalue())
    r, g, b = _rgb_at(out, (150, 150))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16_bit_png_scaled_not_clipped():
    arr = np.full((256, 256), 32768, dtype=np.uint16)  # mid grey in 16 bits
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    out = decode_image(buf.getvalue())
    assert out.mode == "RGB"
    assert 120 <= _rgb_at(out, (10, 10))[0] <= 135  # not clipped to white


def test_palette_with_transparency_over_white():
    img = Image.new("P", (256, 256), 0)
    img.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    img.info["transparency"] = 0
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    out = decode_image(buf.getvalue())
    assert _rgb_at(out, (5, 5)) == (255, 255, 255)


def test_rgba_alpha_over_white():
    img = Image.new("RGBA", (256, 256), (0, 0, 255, 0))
    img.paste((0, 0, 255, 255), (0, 0, 128, 256))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = decode_image(buf.getvalue())
    assert _rgb_at(out, (10, 10)) == (0, 0, 255)
    assert _rgb_at(out, (200, 10)) == (255, 255, 255)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (256, 256), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode_image(buf.getvalue())
    r, g, b = _rgb_at(out, (100, 100))
    assert r > 200 and g < 50 and b < 50


def test_webp_named_jpg_is_sniffed():
    data = image_bytes((0, 200, 0), size=(300, 300), fmt="WEBP")
    assert sniff_format(data) == "WEBP"
    assert _rgb_at(decode_image(data), (150, 150))[1] > 150


def _quadrant_image() -> Image.Image:
    """Upright reference: top-left red, top-right green, bottom-left blue, bottom-right white."""
    img = Image.new("RGB", (400, 300))
    img.paste((255, 0, 0), (0, 0, 200, 150))
    img.paste((0, 255, 0), (200, 0, 400, 150))
    img.paste((0, 0, 255), (0, 150, 200, 300))
    img.paste((255, 255, 255), (200, 150, 400, 300))
    return img


# The stored pixels for orientation k are the upright picture transformed by the inverse of what
# the viewer applies (EXIF spec): applying orientation k must give back the upright picture.
_STORE = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(orientation):
    stored = _STORE[orientation](_quadrant_image())
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())
    out = decode_image(buf.getvalue())
    assert out.size == (400, 300)
    assert _rgb_at(out, (50, 40)) == (255, 0, 0)
    assert _rgb_at(out, (350, 40)) == (0, 255, 0)
    assert _rgb_at(out, (50, 260)) == (0, 0, 255)
    assert _rgb_at(out, (350, 260)) == (255, 255, 255)


def test_large_jpeg_drafted_but_still_covers_model_input():
    data = image_bytes((90, 90, 90), size=(6000, 4000))
    out = decode_image(data, DecodeLimits(target_size=224))
    assert min(out.size) >= 224
    assert out.size[0] <= 1000  # decoded at reduced scale, not 6000 px wide
    assert abs(out.size[0] / out.size[1] - 1.5) < 0.02
