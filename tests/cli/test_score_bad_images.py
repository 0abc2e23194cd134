"""Issue 15, rows 1 and 10 through `backfire score`: an export can hold a strip bomb or a photo
with a large ICC profile; each post gets its own result, the run goes on."""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image

from tests.conftest import RED, image_bytes


def _png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_strip_bomb_gets_an_error_record_and_the_rest_is_scored(run_cli, tmp_path):
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "strip.png").write_bytes(_png(Image.new("L", (1, 65000))))
    (folder / "photo.jpg").write_bytes(image_bytes(RED, size=(640, 480)))
    noise = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    icc = _png(Image.fromarray(noise), icc_profile=os.urandom(2 * 1024 * 1024))
    (folder / "printed.png").write_bytes(icc)
    res = run_cli("score", str(folder), "--out", "v.jsonl")
    assert res.returncode == 1, res.stderr  # some posts failed: exit 1, never a crash
    rows = {
        r["post_id"]: r for r in map(json.loads, (tmp_path / "v.jsonl").read_text().splitlines())
    }
    strip = rows["strip"]
    assert strip["status"] == "error" and strip["error"]["type"] == "image-too-elongated"
    assert "1×65,000" in strip["error"]["message"]
    assert rows["photo"]["status"] == "ok" and rows["printed"]["status"] == "ok"
    assert "1 failed" in res.stderr
