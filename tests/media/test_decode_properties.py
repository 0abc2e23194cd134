"""T11: the decoder under generated hostile input (hypothesis). Valid images of every allowed
format and mode, elongated ones, then truncated, bit-flipped, spliced or given false dimensions,
and random bytes behind each signature. Whatever comes in, the decoder returns an RGB picture
within its bounds (and the model's resize of it stays small) or raises a typed `MediaError`:
never another exception, never a hang (pytest-timeout), never unbounded memory. And the upload
check agrees with the decoder on JPEG and PNG: what it accepts a worker can decode.

A few hundred examples in `make test` (derandomized: the same examples on every run, so a
failure reproduces); `make reproduce` runs a long randomized search.
"""

from __future__ import annotations

import io
import resource
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from workers.errors import MediaError
from workers.media.decode import DecodeLimits, check_image, decode_image, resized_size

# Small limits, so that false headers hit every refusal while a test example stays cheap.
LIMITS = DecodeLimits(max_pixels=2_000_000, max_side=8_000)
_MODES = {
    "JPEG": ["RGB", "L", "CMYK"],
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "GIF": ["P", "L"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["RGB", "L", "P", "1"],
    "TIFF": ["RGB", "L", "RGBA", "CMYK", "I;16"],
}
_SIGNATURES = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"BM",
               b"II*\0", b"MM\0*"]  # fmt: skip
_DIMS = st.one_of(
    st.sampled_from([0, 1, 2, 223, 224, 8_000, 8_001, 65_000, 65_535, 2**31 - 1, 2**32 - 1]),
    st.integers(0, 70_000),
)


def _noise(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    grey = Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L")
    if mode in ("L", "1", "P"):
        return grey.convert(mode)
    bands = [Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L")
             for _ in range(len(mode))]  # fmt: skip
    return Image.merge(mode, bands)


@st.composite
def images(draw: st.DrawFn) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(sorted(_MODES)))
    mode = draw(st.sampled_from(_MODES[fmt]))
    w, h = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    stretch = draw(st.sampled_from([1, 1, 1, 20, 49, 60, 200]))  # strips around the 50:1 limit
    if draw(st.booleans()):
        w = min(w * stretch, 6000)
    else:
        h = min(h * stretch, 6000)
    img = _noise(mode, (w, h), draw(st.integers(0, 2**32 - 1)))
    save: dict[str, object] = {}
    if fmt == "PNG":
        save["interlace"] = draw(st.sampled_from([0, 1]))
    elif fmt == "JPEG":
        save.update(
            progressive=draw(st.booleans()),
            quality=draw(st.integers(5, 95)),
            bufsize=w * h * 4 + 65536,
        )  # progressive strips need it ("Suspension...")
    elif fmt == "TIFF":
        save["compression"] = draw(st.sampled_from([None, "tiff_lzw", "tiff_adobe_deflate",
                                                    "packbits"]))  # fmt: skip
    buf = io.BytesIO()
    try:
        img.save(buf, fmt, **save)
    except OSError:  # an encoder's own limit (rare libjpeg buffer cases): not our input
        assume(False)
    return fmt, buf.getvalue()


def _set_dims(fmt: str, data: bytearray, w: int, h: int) -> None:
    """Make the header declare w×h (the body stays what it was)."""
    if fmt == "PNG" and len(data) >= 33:
        data[16:24] = struct.pack(">II", w & 0xFFFFFFFF, h & 0xFFFFFFFF)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid IHDR CRC
    elif fmt == "JPEG":
        for marker in (b"\xff\xc0", b"\xff\xc2"):
            i = data.find(marker)
            if i > 0 and i + 9 <= len(data):
                data[i + 5 : i + 9] = struct.pack(">HH", h & 0xFFFF, w & 0xFFFF)
                return
    elif fmt == "GIF" and len(data) >= 10:
        data[6:10] = struct.pack("<HH", w & 0xFFFF, h & 0xFFFF)
    elif fmt == "BMP" and len(data) >= 26:
        data[18:26] = struct.pack("<ii", min(w, 2**31 - 1), min(h, 2**31 - 1))


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, bytes]:
    if draw(st.integers(0, 9)) == 0:  # random bytes behind a signature
        sig = draw(st.sampled_from(_SIGNATURES))
        return "raw", sig + draw(st.binary(max_size=3000))
    fmt, original = draw(images())
    data = bytearray(original)
    how = draw(st.sampled_from(["as-is", "truncate", "flip", "splice", "dims", "dims+truncate"]))
    if how in ("truncate", "dims+truncate"):
        del data[draw(st.integers(1, max(1, len(data) - 1))) :]
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    if how == "splice":
        i = draw(st.integers(0, len(data)))
        data[i : i + draw(st.integers(0, 64))] = draw(st.binary(min_size=1, max_size=64))
    if how.startswith("dims"):
        _set_dims(fmt, data, draw(_DIMS), draw(_DIMS))
    return fmt, bytes(data)


_CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


@pytest.fixture(scope="module")
def model_input():
    """The worker's next step after the decoder: the resize and crop to the model's input."""
    from workers.scenes.preprocess import NumpyPreprocess

    return NumpyPreprocess(LIMITS.target_size, *_CLIP_NORM, "bicubic")


def _decodes_within_bounds(data: bytes, model_input) -> None:
    try:
        out = decode_image(data, LIMITS)
    except MediaError as e:
        assert e.message and e.code.startswith(("image-", "media-"))
        return
    assert out.mode == "RGB"
    w, h = out.size
    assert 0 < w * h <= LIMITS.max_pixels and max(w, h) <= LIMITS.max_side
    rw, rh = resized_size(out.size, LIMITS.target_size)
    # JPEG draft and box reduction round sides up by a pixel: allow that, nothing more.
    assert rw * rh <= LIMITS.max_resized_pixels * 1.01
    assert tuple(model_input(out).shape) == (3, LIMITS.target_size, LIMITS.target_size)


_FAST = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.timeout(600)
def test_decoder_returns_bounded_rgb_or_a_typed_error(model_input):
    before = _peak_rss_mb()

    @_FAST
    @given(hostile())
    def decode_one(case: tuple[str, bytes]) -> None:
        _decodes_within_bounds(case[1], model_input)

    decode_one()
    # A strip that reached the resize would have cost gigabytes; a few hundred bounded images
    # cost little. (Growth of this process's peak: zero if an earlier test peaked higher.)
    assert _peak_rss_mb() - before < 512


@pytest.mark.timeout(600)
@settings(_FAST, max_examples=200)
@given(hostile().filter(lambda c: c[0] in ("JPEG", "PNG")))
def test_upload_check_agrees_with_the_decoder(case):
    """The upload check (bounded memory: JPEG at 1/8 scale, PNG inflated in pieces) refuses
    exactly what a worker's decode would fail: accepted uploads do not fail later."""
    _, data = case
    try:
        check_image(data, LIMITS)
        checked: MediaError | None = None
    except MediaError as e:
        checked = e
    try:
        decode_image(data, LIMITS)
        decoded: MediaError | None = None
    except MediaError as e:
        decoded = e
    assert (checked is None) == (decoded is None), f"check: {checked!r}; decode: {decoded!r}"


@pytest.mark.reproduce
@pytest.mark.timeout(3600)
@settings(_FAST, max_examples=20_000, derandomize=False)
@given(hostile())
def test_decoder_long_search(model_input, case):
    _decodes_within_bounds(case[1], model_input)
