"""Decode bombs (issue 15, row 1): time and peak RSS of what a worker does with an image (decode,
then the model's resize and crop to 224) for strip PNGs and oversized headers, against normal
photos measured in the same run. Each case runs in a fresh process; its peak RSS is that
process's own VmHWM (bench/peak_rss.py), and "+RSS" is its VmHWM right after the decode over
the same just before it (imports done: numpy, Pillow, torch).

    .venv/bin/python bench/bench_decode_bombs.py [--photos DIR] [--unbounded]

Photos: ../shared/data/photos/bench when present (the first --baseline files; never copied
into the repository), else a generated 12 MP JPEG. `--unbounded` also decodes the 1×10000 strip
with the geometry bounds lifted, which is what every strip cost before the fix (about +1.5 GB
and several seconds; the 1×65000 one cost 15.5 GB and 75 s, too much for a shared machine).
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.peak_rss import _vm_hwm_kb, run_with_peak_rss  # noqa: E402

DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos" / "bench"
_CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", size).save(buf, "PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


def one(path: Path, unbounded: bool) -> None:
    """In the measured process: decode + resize like a worker, print what happened."""
    import torch  # noqa: F401  (NumpyPreprocess imports it on first call: not in the timing)

    from workers.errors import MediaError
    from workers.media.decode import DecodeLimits, decode_image
    from workers.scenes.preprocess import NumpyPreprocess

    limits = DecodeLimits(max_aspect=1e9, max_side=10**9) if unbounded else DecodeLimits()
    prepare = NumpyPreprocess(224, *_CLIP_NORM, "bicubic")
    data = path.read_bytes()
    before_kb = _vm_hwm_kb_self()
    t = time.perf_counter()
    try:
        prepare(decode_image(data, limits))
        outcome = "scored input ready"
    except MediaError as e:
        outcome = e.code
    ms = (time.perf_counter() - t) * 1000
    after_kb = _vm_hwm_kb_self()
    print(json.dumps({"outcome": outcome, "ms": ms, "hwm_before_mb": before_kb / 1024,
                      "hwm_after_mb": after_kb / 1024}))


def _vm_hwm_kb_self() -> int:
    import os

    return _vm_hwm_kb(os.getpid()) or 0


def measure(path: Path, unbounded: bool = False) -> dict[str, float | str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(path)]
    done, peak_mb = run_with_peak_rss(cmd + (["--unbounded"] if unbounded else []), cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{path.name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["peak_mb"] = peak_mb
    # The decode's own cost: the process's high-water mark right after it, over the mark just
    # before it. (The whole-process peak also catches what interpreter exit touches, which
    # varied by ~150 MB between runs of the same refused strip.)
    row["extra_mb"] = row["hwm_after_mb"] - row["hwm_before_mb"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--baseline", type=int, default=3, help="Normal photos measured.")
    ap.add_argument("--unbounded", action="store_true", help="Also the 1×10000 strip unbounded.")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one, args.unbounded)
        return

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cases: list[tuple[str, Path, bool]] = []
        photos = sorted(p for p in args.photos.glob("*.jp*g"))[: args.baseline] \
            if args.photos.is_dir() else []  # fmt: skip
        if not photos:
            from PIL import Image

            gen = tmp / "generated_12mp.jpg"
            Image.new("RGB", (4000, 3000), (120, 90, 60)).save(gen, quality=90)
            photos = [gen]
        for p in photos:
            cases.append((f"photo {p.name[:32]}", p, False))
        bombs = {
            "strip 1x65000 PNG": _png((1, 65000)),
            "strip 65000x1 PNG": _png((65000, 1)),
            "strip 1x10000 PNG": _png((1, 10000)),
            "strip 3x400 PNG": _png((3, 400)),
            "header 30001x1000 PNG": _png_header_only(30001, 1000),
            "header 30000x2000 PNG": _png_header_only(30000, 2000),
        }
        for name, data in bombs.items():
            f = tmp / (name.replace(" ", "_") + ".png")
            f.write_bytes(data)
            cases.append((name, f, False))
        if args.unbounded:
            cases.append(("strip 1x10000 PNG, bounds lifted", tmp / "strip_1x10000_PNG.png", True))

        print(f"{'case':<36} {'bytes':>9} {'outcome':<22} {'ms':>9} {'peak MB':>8} {'+RSS MB':>8}")
        results = []
        for name, f, unbounded in cases:
            r = measure(f, unbounded)
            results.append((name, r))
            print(f"{name:<36} {f.stat().st_size:>9,} {r['outcome']:<22} {r['ms']:>9.1f} "
                  f"{r['peak_mb']:>8.0f} {r['extra_mb']:>+8.1f}")  # fmt: skip
        base = [r for n, r in results if n.startswith("photo")]
        base_ms = sorted(float(r["ms"]) for r in base)[len(base) // 2]
        base_mb = sorted(float(r["extra_mb"]) for r in base)[len(base) // 2]
        print(f"\nmedian photo: {base_ms:.1f} ms, {base_mb:+.1f} MB over the imports")
        for name, r in results:
            if not name.startswith("photo"):
                print(f"  {name:<36} time {float(r['ms']) / base_ms:6.2f}x photo, "
                      f"+RSS {float(r['extra_mb']):+7.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
