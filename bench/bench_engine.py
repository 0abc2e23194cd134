"""Scoring-engine benchmark (issue 2). Prints figures and ratios measured in this one run.

    .venv/bin/python bench/bench_engine.py [--photos DIR] [--naive-images 12]

Uses ../shared/data/photos/bench when present (else generated photos) and open_clip ViT-B-32
with random weights saved as a real safetensors checkpoint (speed does not depend on weight
values). Reports:
  1. decode + resize to 224 with and without JPEG draft on the ≥1500 px photos (target ≥ 3×);
  2. model-only encode_image images/s at batch 1 and 8;
  3. end-to-end `backfire score` images/s, a subprocess like a user's (target ≥ 80 % of
     model-only at the same batch size), and its peak RSS (target ≤ 1.5 GB);
  4. the naive baseline a user would write (open_clip README recipe per image: open, preprocess,
     encode the image, tokenize and encode the prompts again, softmax) (target: ≥ 3× slower).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.peak_rss import run_with_peak_rss  # noqa: E402

DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos" / "bench"


def photos(folder: Path | None, tmp: Path) -> list[Path]:
    if folder and folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.is_file())
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i, size in enumerate([(4032, 3024), (2048, 1536), (1600, 1200), (800, 600)] * 10):
        arr = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        p = tmp / f"gen_{i:03d}.jpg"
        Image.fromarray(arr).resize(size).save(p, quality=90)
        out.append(p)
    return out


def bench_decode(files: list[Path]) -> None:
    from PIL import Image, ImageOps

    from workers.media.decode import decode_image

    big = []
    for f in files:
        with Image.open(f) as im:
            if max(im.size) >= 1500:
                big.append(f.read_bytes())
    from workers.scenes.preprocess import NumpyPreprocess

    # The same resize-to-224 + crop + normalise after both decoders, so only decoding differs.
    resize = NumpyPreprocess(224, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), "bicubic")

    def plain(data: bytes):
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        return resize(im.convert("RGB"))

    def drafted(data: bytes):
        return resize(decode_image(data))

    for fn in (plain, drafted):  # warm-up
        fn(big[0])
    timings = {}
    for name, fn in (("plain", plain), ("draft", drafted)):
        t = time.perf_counter()
        for d in big:
            fn(d)
        timings[name] = time.perf_counter() - t
    n = len(big)
    print(f"decode+resize on {n} photos ≥1500 px (one thread):")
    for name, label in (("plain", "plain Pillow   "), ("draft", "backfire decode")):
        sec = timings[name]
        print(f"  {label}  {n / sec:7.1f} img/s  ({1000 * sec / n:6.1f} ms/img)")
    print(f"  speed-up         {timings['plain'] / timings['draft']:7.2f}×  (target ≥ 3×)")


def make_checkpoint(tmp: Path) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    ckpt = tmp / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    return ckpt


def bench_model(ckpt: Path, tmp: Path, files: list[Path]) -> dict[int, float]:
    import torch

    from workers.config import Settings
    from workers.media.decode import decode_image
    from workers.scenes.encoder import ClipEncoder

    enc = ClipEncoder(Settings(checkpoint=ckpt, cache_dir=tmp / "cache", offline=True))
    tensors = [enc.prepare(decode_image(f.read_bytes())) for f in files[:16]]
    rates = {}
    for bs in (1, 8):
        batch = (tensors * 8)[: max(16, bs * 4)]
        enc.encode_images(batch[:bs])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(batch), bs):
            enc.encode_images(batch[i : i + bs])
        rates[bs] = len(batch) / (time.perf_counter() - t)
        print(
            f"model-only encode_image, batch {bs}: {rates[bs]:6.1f} img/s "
            f"(torch threads {torch.get_num_threads()})"
        )
    return rates


CAPTIONS = [
    "Free delivery, only at #myNYPD",
    "Great to meet these wonderful officers at the parade, thank you! #myNYPD",
    "Here the #NYPD engages with its community members, gently massaging their hair",
    "Just a photo with a member of the NYPD #myNYPD",
    "Wow, so friendly. Totally how I want to be greeted on my way home #myNYPD",
    "Proud of our officers at the community BBQ today!",
]


def bench_cli(
    ckpt: Path, tmp: Path, files: list[Path], model_rate: float, caption_model: str | None = None,
    precision: str | None = None,
) -> float:
    # Distinct, realistic captions (the caption model's per-process cache does not help here).
    manifest = tmp / "posts.csv"
    manifest.write_text(
        "post_id,image,caption\n"
        + "".join(f'p{i},{f},"{CAPTIONS[i % len(CAPTIONS)]} {i}"\n' for i, f in enumerate(files))
    )
    env = {
        **os.environ,
        "BACKFIRE_CHECKPOINT": str(ckpt),
        "BACKFIRE_OFFLINE": "1",
        "BACKFIRE_CACHE_DIR": str(tmp / "cache"),
        "BACKFIRE_BATCH_SIZE": "8",
    }
    if caption_model:
        env["BACKFIRE_CAPTION_MODEL_FILE"] = caption_model
    if precision:
        env["BACKFIRE_CAPTION_PRECISION"] = precision
    print(f"caption model: {caption_model or 'shipped default (v3)'}, "
          f"{precision or 'default precision (int8)'}")
    backfire = str(Path(sys.executable).with_name("backfire"))
    # Prime the prompt-embedding cache, as any second run has it.
    subprocess.run(
        [backfire, "score", str(manifest), "--out", str(tmp / "warm.jsonl"), "--no-progress"],
        env=env,
        check=False,
        capture_output=True,
    )
    t = time.perf_counter()
    res, peak = run_with_peak_rss(
        [backfire, "score", str(manifest), "--out", str(tmp / "v.jsonl"), "--no-progress"],
        env=env,
    )
    wall = time.perf_counter() - t
    rows = [json.loads(x) for x in (tmp / "v.jsonl").read_text().splitlines()]
    ok = sum(r["status"] == "ok" for r in rows)
    rate = len(rows) / wall
    print(
        f"end-to-end `backfire score` (subprocess, batch 8, {len(rows)} posts, {ok} ok, "
        f"including process start and model load): {rate:6.1f} img/s, {wall:5.1f} s"
    )
    line = next((x for x in res.stderr.splitlines() if x.startswith("Scored")), res.stderr[-200:])
    print(f"  CLI summary: {line[:200]}")
    # Steady-state rate from the run's own timing (model loading excluded) for the ratio.
    stats = _stats_from_summary(res.stderr)
    if stats:
        steady = len(rows) / stats
        print(
            f"  scoring loop only: {steady:6.1f} img/s = {100 * steady / model_rate:5.1f} % of "
            f"model-only batch 8 (target ≥ 80 %)"
        )
    print(f"  peak RSS of the CLI: {peak:7.0f} MB (target ≤ 1536 MB)")
    return rate


def _stats_from_summary(stderr: str) -> float | None:
    import re

    m = re.search(r"; ([0-9.]+) s; pipeline", stderr)
    return float(m.group(1)) if m else None


def bench_naive(ckpt: Path, files: list[Path], n: int) -> float:
    """The open_clip README recipe, per image, as a first-time user writes it."""
    import open_clip
    import torch
    from PIL import Image

    from workers.config import MODEL_CARDS_DIR
    from workers.scenes.prompts import load_prompt_set

    ps = load_prompt_set(MODEL_CARDS_DIR / "scenes.yaml")
    labels = [p for s in ps.scenes.values() for p in s.prompts + s.contrast]
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt))
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    t = time.perf_counter()
    for f in files[:n]:
        image = preprocess(Image.open(f).convert("RGB")).unsqueeze(0)
        text = tokenizer(labels)
        with torch.no_grad():
            image_features = model.encode_image(image)
            text_features = model.encode_text(text)
            image_features /= image_features.norm(dim=-1, keepdim=True)
            text_features /= text_features.norm(dim=-1, keepdim=True)
            (100.0 * image_features @ text_features.T).softmax(dim=-1)
    rate = n / (time.perf_counter() - t)
    print(
        f"naive README recipe ({len(labels)} label prompts re-encoded per image, batch 1, no "
        f"draft), {n} images: {rate:6.2f} img/s"
    )
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--naive-images", type=int, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = photos(args.photos, tmp)
        print(
            f"photos: {len(files)} from {args.photos if args.photos.is_dir() else 'generator'}; "
            f"cores: {os.cpu_count()}"
        )
        bench_decode(files)
        ckpt = make_checkpoint(tmp)
        rates = bench_model(ckpt, tmp, files)
        e2e = bench_cli(ckpt, tmp, files, rates[8])
        e2e_f32 = bench_cli(ckpt, tmp, files, rates[8], precision="float32")
        from workers.caption import LINEAR_MODEL_FILE, MINILM_MODEL_FILE

        e2e_v2 = bench_cli(ckpt, tmp, files, rates[8], str(MINILM_MODEL_FILE))
        e2e_v1 = bench_cli(ckpt, tmp, files, rates[8], str(LINEAR_MODEL_FILE))
        print(f"end-to-end with caption v3 (int8), v3 float32, v2 int8 (same run): "
              f"{e2e / e2e_v1:5.3f}×, {e2e_f32 / e2e_v1:5.3f}×, {e2e_v2 / e2e_v1:5.3f}× the rate "
              "with v1")
        naive = bench_naive(ckpt, files, args.naive_images)
        print(f"end-to-end vs naive: {e2e / naive:5.1f}× faster (target ≥ 3×)")


if __name__ == "__main__":
    main()
