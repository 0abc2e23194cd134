"""Decode untrusted image bytes into an RGB picture the scene model can use.

Every refusal is a typed `MediaError` with a sentence a person understands; nothing here ever
crashes a batch or a worker. Order of checks matters: sniff the bytes before Pillow sees them
(Pillow would happily try formats we never want to parse), read only the header to check the
geometry (pixel count, sides, aspect ratio), and let JPEG `draft` decode at reduced scale before
any pixel is touched.

Why the aspect ratio: the model resizes the *short* side to its input size (224 px), so a
1×65,000 PNG of 208 bytes passes any pixel count and then becomes 224 × 14.6 M px (15 GB) in
the resize. Bounding long ÷ short bounds the resized picture for every accepted image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from workers.errors import (
    CorruptImage,
    EmptyImage,
    ImageTooElongated,
    ImageTooLarge,
    TruncatedImage,
    UnsupportedFormat,
)

if TYPE_CHECKING:
    from workers.config import Settings

# Pillow format name for each allowed signature. Order: longest/most specific first.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WEBP"),  # after b"RIFF" + 4-byte size
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

#: How far one compressed PNG metadata chunk may inflate. Pillow's default (1 MiB, its
#: MAX_TEXT_CHUNK) also applies to the ICC profile, so a valid photo carrying a 2 MB print
#: profile was refused as damaged; real profiles reach a few MB. Still a bound: one chunk
#: cannot inflate past this, and text chunks together stay under Pillow's MAX_TEXT_MEMORY.
PNG_MAX_CHUNK_INFLATE = 16 * 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 60_000_000
    #: The model's input side: JPEGs are drafted and big images reduced, never below this.
    target_size: int = 224
    #: No side longer than this (a 30,000 px strip is a scan or an attack, not a post's photo).
    max_side: int = 30_000
    #: Long side ÷ short side. Bounds what the model's resize makes of an accepted image.
    max_aspect: float = 50.0

    @classmethod
    def from_settings(cls, settings: Settings, target_size: int = 224) -> DecodeLimits:
        return cls(
            max_pixels=settings.max_image_pixels,
            target_size=target_size,
            max_side=settings.max_image_side,
            max_aspect=settings.max_image_aspect,
        )

    @property
    def max_resized_pixels(self) -> int:
        """The most pixels the model's resize (short side → `target_size`) can make of an
        image these limits accept: 224 × 11,200 = 2.5 M px at 224 px and 50:1."""
        return self.target_size * int(self.target_size * self.max_aspect)


def resized_size(size: tuple[int, int], target: int) -> tuple[int, int]:
    """The size the model's resize gives an image of `size`: short side = `target`, long side
    truncated (torchvision's `Resize(target)`, as `workers.scenes.preprocess` does it)."""
    w, h = size
    return (target, int(target * h / w)) if w <= h else (int(target * w / h), target)


def sniff_format(data: bytes) -> str:
    """The Pillow format name for `data`, from its first bytes, or `UnsupportedFormat`."""
    if not data:
        raise EmptyImage("The file is empty (0 bytes); there is no image to score.")
    for magic, offset, fmt in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (fmt != "WEBP" or data[:4] == b"RIFF"):
            return fmt
    raise UnsupportedFormat(_describe_unsupported(data))


# ISO base media brands (bytes 8-12 after "ftyp") of still-image formats people upload.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
# Other well-known signatures, so the refusal names what the file is.
_OTHER_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"8BPS", 0, "a Photoshop document (PSD)"),
    (b"MZ", 0, "a Windows program (PE executable)"),
    (b"\x7fELF", 0, "a Linux program (ELF executable)"),
    (b"SIMPLE  =", 0, "a FITS astronomy image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "a JPEG XL image"),
    (b"\xff\x0a", 0, "a JPEG XL image"),
    (b"\x00\x00\x01\x00", 0, "a Windows icon (ICO)"),
    (b"DICM", 128, "a DICOM medical image"),
    (b"PK\x03\x04", 0, "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", 0, "a gzip-compressed file"),
    (b"Rar!", 0, "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"OggS", 0, "an Ogg audio/video file"),
    (b"ID3", 0, "an MP3 audio file"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
)


def _describe_unsupported(data: bytes) -> str:
    allowed = ", ".join(ALLOWED_FORMATS)
    return (
        f"The file is {_kind_of(data)}, which Backfire does not score. Accepted image "
        f"formats: {allowed}."
    )


def _kind_of(data: bytes) -> str:
    """What an unsupported file most likely is, for the refusal message."""
    head = data[:512].lstrip().lower()
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "an AVIF image (convert it to JPEG or PNG first)"
        if brand in _HEIF_BRANDS:
            return "a HEIC/HEIF photo (the iPhone camera format; export it as JPEG first)"
        return "an MP4/QuickTime video"
    for magic, offset, kind in _OTHER_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind
    if data[:4] == b"RIFF":
        return f"a RIFF {data[8:12].decode('latin-1').strip() or 'container'} file (audio/video)"
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if head.startswith(b"%!ps") or data[:4] == b"\xc5\xd0\xd3\xc6":
        return "a PostScript/EPS file"
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in data[:4096].lower()):
        return "an SVG drawing"
    if head.startswith((b"<html", b"<!doctype")):
        return "an HTML page"
    if _looks_like_text(data[:4096]):
        return "plain text"
    return f"of an unrecognised format (it starts with bytes {data[:8].hex(' ')})"


def _looks_like_text(sample: bytes) -> bool:
    # NUL and most control bytes are valid UTF-8 but never appear in text: a binary file made
    # of ASCII and zeros (an executable, a raw dump) must not be called text.
    if any(b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D) for b in sample):
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(sample) - 3  # a character cut by the 4096-byte sample
    return True


def check_image(data: bytes, limits: DecodeLimits | None = None) -> tuple[str, tuple[int, int]]:
    """Validation at upload, in bounded memory: format and geometry from the header, and for
    JPEG and PNG (nearly every upload) the pixel data itself, so a truncated or damaged file
    is refused now (422) rather than accepted and failed in a worker. JPEGs are decoded at 1/8
    scale (the whole entropy-coded stream is still read); PNGs are inflated in pieces and
    never held as pixels (`workers.media.verify`). Other formats: header only."""
    limits = limits or DecodeLimits()
    fmt = sniff_format(data)
    with _open(data, fmt) as img:
        _check_geometry(img.size, limits)
        size = img.size
        if fmt == "JPEG":
            img.draft(None, (1, 1))  # the smallest scale libjpeg offers: 1/8 per side
            _load(img, fmt)
        elif fmt == "PNG":
            from workers.media.verify import verify_png_pixels

            verify_png_pixels(data)
        return fmt, size


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> Image.Image:
    """Bytes → upright RGB image whose shorter side is at least `limits.target_size`
    (unless the original is smaller). Raises a `MediaError` subclass on any bad input."""
    limits = limits or DecodeLimits()
    fmt = sniff_format(data)
    img = _open(data, fmt)
    _check_geometry(img.size, limits)
    if fmt == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale when that still covers the model input: 5-10x faster
        # on 12 MP phone photos, and the model only sees 224 px anyway.
        w, h = img.size
        scale = limits.target_size / max(1, min(w, h))
        if scale < 1:
            img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
    _load(img, fmt)
    img = _upright(img)
    img = _to_rgb(img)
    return _reduce(img, limits.target_size)


def _open(data: bytes, fmt: str) -> Image.Image:
    if PngImagePlugin.MAX_TEXT_CHUNK < PNG_MAX_CHUNK_INFLATE:
        # Pillow's module-level knob (process-wide, so set once, here, before any PNG opens).
        PngImagePlugin.MAX_TEXT_CHUNK = PNG_MAX_CHUNK_INFLATE
    try:
        # formats=[fmt]: Pillow must not guess another parser than the one the bytes announce.
        return Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as e:
        # Pillow refuses before we can read the size: far over any sane limit.
        raise ImageTooLarge(
            f"The image declares far too many pixels to decode safely ({e})."
        ) from e
    except UnidentifiedImageError as e:
        raise CorruptImage(
            f"The file starts like a {fmt} image but its header is damaged or incomplete."
        ) from e
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:
        msg = str(e).lower()
        if "truncated" in msg or isinstance(e, EOFError):
            raise TruncatedImage(f"The {fmt} file is truncated ({e}).") from e
        raise CorruptImage(f"The {fmt} file is damaged and cannot be read ({e}).") from e


def _load(img: Image.Image, fmt: str) -> None:
    """Decode the first frame's pixels, translating every way Pillow fails into a MediaError."""
    try:
        img.seek(0)  # first frame of animated GIF/WebP/TIFF
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(f"The image is too large to decode safely ({e}).") from e
    except OSError as e:
        if "truncated" in str(e).lower() or "premature end" in str(e).lower():
            raise TruncatedImage(
                f"The {fmt} file is truncated: it ends before the picture is complete."
            ) from e
        raise CorruptImage(f"The {fmt} file is damaged and cannot be decoded ({e}).") from e
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError) as e:
        raise CorruptImage(f"The {fmt} file is damaged and cannot be decoded ({e}).") from e


def _check_geometry(size: tuple[int, int], limits: DecodeLimits) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise CorruptImage(f"The image header declares an empty picture ({w}×{h}).")
    # The model's resize, not the decoded picture, is what a strip blows up: bound it first.
    rw, rh = resized_size(size, limits.target_size)
    if rw * rh > limits.max_resized_pixels:
        ratio = max(w, h) / min(w, h)
        times = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.1f}"
        raise ImageTooElongated(
            f"The image is {w:,}×{h:,} px: its long side is {times} times "
            f"its short side, over the limit of {limits.max_aspect:g}:1 (a strip or banner, "
            f"not a photo; scaling it to the model's input would take {rw:,}×{rh:,} px)."
        )
    if max(w, h) > limits.max_side:
        raise ImageTooLarge(
            f"The image is {w:,}×{h:,} px; sides over {limits.max_side:,} px are refused "
            "(an oversized scan or a decompression bomb)."
        )
    # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; we refuse from the lower of
    # its threshold and ours, so a bomb warning can never slip through as a mere warning. (An
    # explicit check, because warnings filters are process-global and we decode in threads.)
    limit = min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)
    if w * h > limit:
        raise ImageTooLarge(
            f"The image declares {w}×{h} = {w * h:,} pixels, over the limit of "
            f"{limit:,} (a decompression bomb or an oversized scan)."
        )


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. A broken EXIF block must not cost the photo its score: the
    pixels are fine, so we keep them as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - any EXIF parser failure means "orientation unknown"
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and 32-bit greyscale: scale to 8 bits ourselves; convert("L") would clip.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    has_alpha = (
        mode in ("RGBA", "LA", "PA", "RGBa", "La")
        or (mode == "P" and "transparency" in img.info)
        or (mode in ("L", "RGB") and "transparency" in img.info)
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _reduce(img: Image.Image, target: int) -> Image.Image:
    """Box-reduce big images (non-JPEG, or JPEGs past what draft's 1/8 can do) by an integer
    factor that keeps the short side ≥ target: the model's bicubic resize then works on a small
    picture instead of a 24 MP one."""
    factor = min(img.size) // target
    if factor >= 2:
        return img.reduce(factor)
    return img
