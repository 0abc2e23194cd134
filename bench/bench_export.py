"""Batch-scoring a hashtag export whose media come over the network.

A generated twarc2 export (response pages; a share of the tweets are retweets) is scored with
`backfire score`, its media served from 127.0.0.1 with an added latency per request:

1. cold: empty media cache, every picture downloaded (the real case);
2. warm: the same run with every picture already in the media cache: the model-only ceiling
   (reading, decoding and scoring, no network).

With `--photos DIR` the pictures are the JPEGs of DIR at their real sizes (each served copy made
distinct by a comment segment, so no two posts share an image), else generated ones.
`--precisions float32,int8` runs both steps for each image-tower precision in the same run
(each with its own empty media cache) and prints their ratio and the projection for 100,000
posts.

Printed: posts/s of both and their ratio (target ≥ 90 %: downloads must hide behind the model),
peak RSS of the cold run, and what folding retweets into their originals saved.

  .venv/bin/python bench/bench_export.py                 # 10,000 posts, tiny CLIP
  .venv/bin/python bench/bench_export.py --posts 1000    # quick
  .venv/bin/python bench/bench_export.py --model vit-b-32 --posts 500   # real-size model
  .venv/bin/python bench/bench_export.py --model vit-b-32 --posts 2000 \
      --photos ../shared/data/photos/bench --precisions float32,int8    # issue 20

No timing asserts: figures only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.peak_rss import run_with_peak_rss  # noqa: E402


def make_images(n: int, size: tuple[int, int], seed: int) -> list[bytes]:
    """n distinct photo-like JPEGs: a shared noisy background with a moving coloured block."""
    from PIL import Image

    rng = random.Random(seed)
    w, h = size
    noise = Image.effect_noise(size, 40).convert("RGB")
    out = []
    for i in range(n):
        im = noise.copy()
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        x, y = (i * 37) % (w - 40), (i * 53) % (h - 40)
        im.paste(colour, (x, y, x + 40, y + 40))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def distinct_photos(folder: Path, n: int) -> list[bytes]:
    """n JPEGs cycling through `folder`'s, each with its own comment segment after the SOI
    marker: the same decode cost as the photo, a different sha256 (no image reuse)."""
    # Only real JPEGs (a few files named .jpg are not): the comment segment needs the SOI marker.
    photos = [b for p in sorted(folder.glob("*.jp*g")) if (b := p.read_bytes())[:2] == b"\xff\xd8"]
    if not photos:
        raise SystemExit(f"no JPEG in {folder}")
    out = []
    for i in range(n):
        body = photos[i % len(photos)]
        note = f"copy {i}".encode()
        out.append(body[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + body[2:])
    return out


#: Hand-written caption shapes of campaign replies (20-35 tokens, like the police-stance tweets'
#: average), made distinct per post by its number: caption scoring costs what real captions do.
CAPTIONS = [
    "Thank you officers for keeping our block safe at the street fair today, photo {k} #myNYPD",
    "This is what community policing looks like in my neighbourhood, great job everyone ({k}) "
    "#myNYPD",
    "Four cops on one kid for a turnstile, picture {k}, is this the friendly photo you wanted? "
    "#myNYPD",
    "Nothing says serve and protect like pepper spray at a peaceful march, shot {k} #myNYPD",
    "Officer helped my grandmother cross Flatbush this morning, wholesome moment number {k} "
    "#myNYPD",
    "Free delivery to the precinct with every stop and frisk, only at #myNYPD, number {k}",
    "Here is my photo with the NYPD: batons out at Union Square last night ({k}) #myNYPD",
    "Kids meeting the mounted unit at the park, they loved the horses, picture {k} #myNYPD",
]


def caption(k: int) -> str:
    return CAPTIONS[k % len(CAPTIONS)].format(k=k)


def write_twarc2(path: Path, n_posts: int, repost_share: float, port: int, seed: int) -> int:
    """Pages of 100 tweets; `repost_share` of them retweet an earlier original. Returns the
    number of originals (= pictures)."""
    rng = random.Random(seed)
    originals: list[str] = []
    with open(path, "w") as f:
        for start in range(0, n_posts, 100):
            data, media, tweets = [], [], []
            for i in range(start, min(start + 100, n_posts)):
                tid = str(10_000_000 + i)
                if originals and rng.random() < repost_share:
                    oid = rng.choice(originals)
                    k = int(oid) - 10_000_000
                    data.append({
                        "id": tid, "text": f"RT @user{k}: {caption(k)}", "author_id": "2",
                        "referenced_tweets": [{"type": "retweeted", "id": oid}],
                        "attachments": {"media_keys": [f"3_{oid}"]},
                    })  # fmt: skip
                    tweets.append({
                        "id": oid, "text": caption(k), "author_id": "1",
                        "attachments": {"media_keys": [f"3_{oid}"]},
                    })  # fmt: skip
                    media.append({"media_key": f"3_{oid}", "type": "photo",
                                  "url": f"http://127.0.0.1:{port}/media/{k}.jpg"})
                else:
                    originals.append(tid)
                    data.append({"id": tid, "text": caption(i), "author_id": "1",
                                 "attachments": {"media_keys": [f"3_{tid}"]}})
                    media.append({"media_key": f"3_{tid}", "type": "photo",
                                  "url": f"http://127.0.0.1:{port}/media/{i}.jpg"})
            page = {"data": data, "includes": {"media": media, "tweets": tweets,
                    "users": [{"id": "1", "username": "a"}, {"id": "2", "username": "b"}]},
                    "meta": {"result_count": len(data)}}  # fmt: skip
            f.write(json.dumps(page) + "\n")
    return len(originals)


class Media:
    def __init__(self, latency_s: float) -> None:
        self.bodies: dict[str, bytes] = {}
        self.latency_s = latency_s
        self.requests = 0
        self.lock = threading.Lock()


def serve(media: Media) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            with media.lock:
                media.requests += 1
            time.sleep(media.latency_s)
            body = media.bodies.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 256
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


def model_env(kind: str, tmp: Path) -> dict[str, str]:
    import open_clip
    import torch
    from safetensors.torch import save_file

    if kind == "tiny":
        from tests.support.fakes import make_tiny_clip

        cfg, ckpt = make_tiny_clip(tmp / "tiny")
        return {"BACKFIRE_MODEL_CONFIG_FILE": str(cfg), "BACKFIRE_CHECKPOINT": str(ckpt)}
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    ckpt = tmp / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    return {"BACKFIRE_MODEL_NAME": "ViT-B-32", "BACKFIRE_CHECKPOINT": str(ckpt)}


_SUMMARY = re.compile(
    r"Scored (\d+) of (\d+) posts.*?(\d+) images decoded.*?; ([\d.]+) s; pipeline"
)


def score(export: Path, out: Path, env: dict[str, str]) -> tuple[dict[str, float], str]:
    cmd = [sys.executable, "-m", "workers.cli", "score", str(export), "--out", str(out),
           "--allow-private-network", "--no-progress", "--hashtag", "myNYPD"]  # fmt: skip
    proc, peak_mb = run_with_peak_rss(cmd, env=env, cwd=REPO)
    m = _SUMMARY.search(proc.stderr.replace("\n", " "))
    if proc.returncode not in (0, 1) or m is None:
        raise SystemExit(f"backfire score failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    ok, posts, decoded, seconds = (float(x) for x in m.groups())
    stats = {"ok": ok, "posts": posts, "decoded": decoded, "seconds": seconds, "rss_mb": peak_mb}
    return stats, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--repost-share", type=float, default=0.2)
    ap.add_argument("--model", choices=["tiny", "vit-b-32"], default="tiny")
    ap.add_argument("--image-size", default="640x480", help="generated pictures (no --photos)")
    ap.add_argument("--photos", type=Path, help="serve these JPEGs (real sizes) instead")
    ap.add_argument("--precisions", default="float32", help="image towers, e.g. float32,int8")
    ap.add_argument("--concurrency", type=int, help="BACKFIRE_FETCH_CONCURRENCY (default 16)")
    ap.add_argument("--per-host", type=int, help="BACKFIRE_FETCH_PER_HOST (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores: compare within this run)")

    with tempfile.TemporaryDirectory(prefix="bench-export-") as d:
        tmp = Path(d)
        media = Media(args.latency_ms / 1000)
        httpd, port = serve(media)
        export = tmp / "tweets.jsonl"
        n_orig = write_twarc2(export, args.posts, args.repost_share, port, args.seed)
        t = time.perf_counter()
        # Only the pictures the export references (originals' indices).
        for line in export.read_text().splitlines():
            for m in json.loads(line)["includes"]["media"]:
                path = "/" + m["url"].split("/", 3)[3]
                media.bodies.setdefault(path, b"")
        paths = [p for p in media.bodies]
        if args.photos:
            bodies = distinct_photos(args.photos, len(paths))
            what = f"JPEGs of {args.photos.name} at their sizes"
        else:
            w, h = (int(x) for x in args.image_size.split("x"))
            bodies = make_images(len(paths), (w, h), args.seed)
            what = f"{w}x{h} JPEG"
        for p, body in zip(paths, bodies, strict=True):
            media.bodies[p] = body
        mb = sum(map(len, media.bodies.values())) / 1e6
        print(f"export: {args.posts} tweets, {n_orig} originals with {len(paths)} pictures "
              f"({mb:.0f} MB, {what}), made in {time.perf_counter() - t:.1f} s; "
              f"latency {args.latency_ms:g} ms per request; model {args.model}")  # fmt: skip

        base_env = {**os.environ, **model_env(args.model, tmp), "BACKFIRE_OFFLINE": "1",
                    "BACKFIRE_CACHE_DIR": str(tmp / "cache"),
                    "BACKFIRE_DATA_DIR": str(tmp / "data")}  # fmt: skip
        if args.concurrency:
            base_env["BACKFIRE_FETCH_CONCURRENCY"] = str(args.concurrency)
        if args.per_host:
            base_env["BACKFIRE_FETCH_PER_HOST"] = str(args.per_host)
        e2e_by: dict[str, float] = {}
        for precision in precisions:
            env = {**base_env, "BACKFIRE_IMAGE_PRECISION": precision,
                   "BACKFIRE_MEDIA_CACHE_DIR": str(tmp / f"media-cache-{precision}")}
            before = media.requests
            cold, _ = score(export, tmp / f"cold-{precision}.jsonl", env)
            cold_requests = media.requests - before
            warm, _ = score(export, tmp / f"warm-{precision}.jsonl", env)
            e2e = cold["posts"] / cold["seconds"]
            ceiling = warm["posts"] / warm["seconds"]
            e2e_by[precision] = e2e
            print(f"\n[{precision}] end to end (cold cache, network): {cold['posts']:.0f} posts "
                  f"in {cold['seconds']:.1f} s = {e2e:.1f} posts/s; {cold_requests} downloads")
            print(f"[{precision}] model only (warm cache, no network): {warm['posts']:.0f} posts"
                  f" in {warm['seconds']:.1f} s = {ceiling:.1f} posts/s; "
                  f"{media.requests - before - cold_requests} downloads")  # fmt: skip
            print(f"[{precision}] end to end / model only: {100 * e2e / ceiling:.0f} %  "
                  "(target >= 90 %)")
            print(f"[{precision}] peak RSS of the scoring process (cold run): "
                  f"{cold['rss_mb']:.0f} MB")
            print(f"[{precision}] 100,000 posts at this rate: {100_000 / e2e / 3600:.2f} h "
                  f"(target < 1 h: >= 28 posts/s)")
            saved = args.posts - cold["posts"]
            print(f"[{precision}] repost dedup: {args.posts} tweets -> {cold['posts']:.0f} posts "
                  f"scored; {saved:.0f} retweets folded ({100 * saved / args.posts:.0f} % fewer "
                  f"posts, downloads and model calls); {cold['decoded']:.0f} images decoded")
        httpd.shutdown()
    if len(e2e_by) > 1:
        first = precisions[0]
        for p in precisions[1:]:
            print(f"\nend to end {p} / {first}: {e2e_by[p] / e2e_by[first]:.2f}x")


if __name__ == "__main__":
    main()
