"""Issue 15, rows 1 and 10 at the API: hostile or damaged images are refused at upload with a
specific problem type, so nothing is accepted (202) that a worker would fail or choke on."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from workers.store import open_database
from workers.store.posts import status_counts


def _post(client, auth, data: bytes, name: str = "x.png", ctype: str = "image/png"):
    return client.post("/v1/posts", headers=auth, files={"image": (name, data, ctype)})


def _problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith(f"/{code}") and body["code"] == code
    return body


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(w * h)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_strip_png_bomb_is_refused_with_422_image_too_elongated(client, auth, api_settings):
    strip = _save(Image.new("L", (1, 65000)), "PNG")  # ~200 bytes; 15.5 GB in a worker before
    body = _problem(_post(client, auth, strip), 422, "image-too-elongated")
    assert "1×65,000" in body["detail"] and "50:1" in body["detail"]
    wide = _save(Image.new("L", (10000, 1)), "PNG")
    _problem(_post(client, auth, wide), 422, "image-too-elongated")
    # Nothing was accepted: no row, nothing queued for a worker.
    assert status_counts(open_database(api_settings, upgrade=False)) == {}


def test_pixel_damage_is_refused_at_upload_not_failed_later(client, auth, api_settings):
    jpeg = _save(_noise(320, 240), "JPEG")
    body = _problem(_post(client, auth, jpeg[: len(jpeg) // 2], "t.jpg", "image/jpeg"), 422,
                    "image-truncated")  # fmt: skip
    assert "JPEG" in body["detail"]
    png = _save(_noise(200, 150), "PNG")
    _problem(_post(client, auth, png[: len(png) * 2 // 3]), 422, "image-truncated")
    damaged = bytearray(png)
    at = damaged.index(b"IDAT") + 200
    damaged[at : at + 300] = os.urandom(300)
    r = _post(client, auth, bytes(damaged))
    assert r.status_code == 422 and r.json()["code"] in ("image-corrupt", "image-truncated")
    assert status_counts(open_database(api_settings, upgrade=False)) == {}


def test_png_with_a_2_mb_icc_profile_is_accepted(client, auth):
    data = _save(_noise(300, 200), "PNG", icc_profile=os.urandom(2 * 1024 * 1024))
    r = _post(client, auth, data)
    assert r.status_code == 202, r.text


def test_unsupported_formats_are_named_in_the_refusal(client, auth):
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 256
    body = _problem(_post(client, auth, heic, "IMG_0001.HEIC", "image/heic"), 415,
                    "image-unsupported-format")  # fmt: skip
    assert "HEIC" in body["detail"] and "not a photo" not in body["detail"]
    exe = b"MZ\x90\0\x03\0\0\0" + b"\0" * 120 + b"This program cannot be run in DOS mode."
    body = _problem(_post(client, auth, exe, "photo.jpg", "image/jpeg"), 415,
                    "image-unsupported-format")  # fmt: skip
    assert "executable" in body["detail"] and "text" not in body["detail"]
