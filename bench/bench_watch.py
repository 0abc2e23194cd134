"""The live path under a campaign peak, and replay against score.

1. Peak: a fake Mastodon on 127.0.0.1 (50 ms per API request) publishes distinct photos at
   `--rate` posts/s (the #myNYPD peak: 10,000 posts/hour ≈ 2.8/s) for `--duration` s while an
   in-process `backfire watch` polls every `--every` s (ViT-B-32 with random weights by
   default). Printed: lag from publication to stored verdict (p50/p95) and from first seen.
2. Sustained rate: the same at each of `--rates` for `--probe-duration` s with a shorter poll;
   lag is "flat" when the last third's p50 is within 1.5x of the first third's plus one poll.
3. Replay vs score: a `--replay-posts` manifest (`--replay-images` distinct photos, reposted)
   scored by `backfire score` and replayed by `backfire replay` (same pipeline): posts/s of
   each and their ratio (replay's extra cost is ordering and the rule on the simulated clock).

  .venv/bin/python bench/bench_watch.py                        # all three, ViT-B-32
  .venv/bin/python bench/bench_watch.py --model tiny --duration 30 --rates 3,10 --skip-replay

No timing asserts: figures only. The caption model is v1 (linear) unless --caption default.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.bench_export import model_env  # noqa: E402


def photo(n: int) -> bytes:
    """A distinct photo-like JPEG per post (480x360, noise plus a coloured block)."""
    from PIL import Image

    rng = random.Random(n)
    im = Image.effect_noise((480, 360), 30 + n % 20).convert("RGB")
    x, y = rng.randrange(400), rng.randrange(280)
    im.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (x, y, x + 80, y + 80))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def pct(xs: list[float], q: float) -> float:
    from workers.live.lag import percentile

    v = percentile(xs, q)
    return float("nan") if v is None else v


def run_peak(env: dict[str, str], tmp: Path, rate: float, duration: float, every: float,
             latency: float) -> dict[str, float]:  # fmt: skip
    """One watcher in this process against the fake server; lag figures from the store."""
    from rich.console import Console
    from sqlalchemy import select

    from tests.support.fake_platforms import FakePlatforms
    from workers.config import Settings
    from workers.domain import parse_time
    from workers.live.watch import Watcher, WatchOptions
    from workers.net.guard import FetchPolicy
    from workers.sources.live import ApiClient
    from workers.sources.live.mastodon import MastodonSource
    from workers.store import open_database
    from workers.store.models import PostRow

    cache: dict[int, bytes] = {}

    def image(n: int) -> bytes:
        if n not in cache:
            cache[n] = photo(n)
        return cache[n]

    data = tmp / f"data-{rate}-{every}"
    settings = Settings(**{k.removeprefix("BACKFIRE_").lower(): v for k, v in env.items()
                           if k.startswith("BACKFIRE_")}).model_copy(  # fmt: skip
        update={"data_dir": data, "allow_private_network": True}
    )
    fake = FakePlatforms(latency_s=latency, images=image)
    stop = threading.Event()
    client = ApiClient(FetchPolicy.from_settings(settings), "mastodon", wait=stop.wait)
    w = Watcher(settings, MastodonSource(client, "myNYPD", fake.url), WatchOptions(every_s=every),
                Console(stderr=True, width=200, quiet=True), stop=stop)  # fmt: skip
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    while not (data / "backfire.db").exists() or w.totals.polls == 0:  # model loaded, polling
        time.sleep(0.2)
    n = int(rate * duration)
    fake.schedule([(1 / rate, "Free delivery, only at #myNYPD", (200, 30, 30))] * n).join()
    deadline = time.monotonic() + every + 600
    while w.totals.posts < n and time.monotonic() < deadline:
        time.sleep(0.5)
    stop.set()
    t.join(120)
    fake.close()
    db = open_database(settings, upgrade=False)
    with db.read() as s:
        rows = s.execute(select(PostRow.created_at, PostRow.accepted_at, PostRow.finished_at)
                         .order_by(PostRow.posted_at)).all()  # fmt: skip
    db.dispose()
    created = [(f - parse_time(c)).total_seconds() for c, _a, f in rows]  # type: ignore[operator]
    seen = [(f - a).total_seconds() for _c, a, f in rows]
    third = max(1, len(created) // 3)
    return {
        "posts": len(rows), "published": n, "created_p50": pct(created, 0.5),
        "created_p95": pct(created, 0.95), "seen_p50": pct(seen, 0.5), "seen_p95": pct(seen, 0.95),
        "first_third_p50": pct(created[:third], 0.5), "last_third_p50": pct(created[-third:], 0.5),
    }  # fmt: skip


def write_manifest(path: Path, posts: int, images: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(images):
        f = folder / f"{i}.jpg"
        f.write_bytes(photo(i))
        files.append(f)
    t0 = datetime(2014, 4, 22, 14, 0, tzinfo=UTC)
    rng = random.Random(19)
    with open(path, "w") as out:
        for i in range(posts):
            at = t0 + timedelta(seconds=i * 3.6 + rng.random())  # 10,000 posts/hour
            cap = "Free delivery, only at #myNYPD" if rng.random() < 0.4 else "Great day #myNYPD"
            out.write(json.dumps({"post_id": f"p{i}", "image": str(files[rng.randrange(images)]),
                                  "caption": cap, "created_at": at.isoformat(),
                                  "hashtag": "myNYPD"}) + "\n")  # fmt: skip


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    started = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if res.returncode not in (0, 1):
        raise SystemExit(f"{cmd[2:4]} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - started, res.stdout, res.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["tiny", "vit-b-32"], default="vit-b-32")
    ap.add_argument("--caption", choices=["v1", "default"], default="v1")
    ap.add_argument("--rate", type=float, default=2.8)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--every", type=float, default=30)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--rates", default="2.8,6,10")
    ap.add_argument("--probe-duration", type=float, default=60)
    ap.add_argument("--probe-every", type=float, default=5)
    ap.add_argument("--replay-posts", type=int, default=10_000)
    ap.add_argument("--replay-images", type=int, default=300)
    ap.add_argument("--skip-peak", action="store_true")
    ap.add_argument("--skip-probe", action="store_true")
    ap.add_argument("--skip-replay", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-watch-") as d:
        tmp = Path(d)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFIRE_")}
        env.update(model_env(args.model, tmp), BACKFIRE_OFFLINE="1",
                   BACKFIRE_CACHE_DIR=str(tmp / "cache"), BACKFIRE_DATA_DIR=str(tmp / "data"))
        if args.caption == "v1":
            from workers.caption import LINEAR_MODEL_FILE

            env["BACKFIRE_CAPTION_MODEL_FILE"] = str(LINEAR_MODEL_FILE)
        print(f"model {args.model}, caption {args.caption}, {os.cpu_count()} cores")
        if not args.skip_peak:
            r = run_peak(env, tmp, args.rate, args.duration, args.every, args.latency)
            print(f"peak {args.rate:g} posts/s for {args.duration:g} s, poll every "
                  f"{args.every:g} s, API latency {args.latency * 1000:.0f} ms: "
                  f"{r['posts']}/{r['published']} stored; lag publication→verdict p50 "
                  f"{r['created_p50']:.1f} s p95 {r['created_p95']:.1f} s; first seen→verdict "
                  f"p50 {r['seen_p50']:.1f} s p95 {r['seen_p95']:.1f} s")  # fmt: skip
        if not args.skip_probe:
            for rate in [float(x) for x in args.rates.split(",")]:
                r = run_peak(env, tmp, rate, args.probe_duration, args.probe_every, args.latency)
                flat = r["last_third_p50"] <= 1.5 * r["first_third_p50"] + args.probe_every
                print(f"rate {rate:g} posts/s (poll {args.probe_every:g} s, "
                      f"{args.probe_duration:g} s): {r['posts']}/{r['published']} stored; lag p50 "
                      f"first third {r['first_third_p50']:.1f} s, last third "
                      f"{r['last_third_p50']:.1f} s, p95 {r['created_p95']:.1f} s → "
                      f"{'flat' if flat else 'GROWING'}")  # fmt: skip
        if not args.skip_replay:
            manifest = tmp / "posts.jsonl"
            write_manifest(manifest, args.replay_posts, args.replay_images, tmp / "img")
            cli = [sys.executable, "-m", "workers.cli"]
            s_wall, _o, s_err = timed([*cli, "score", str(manifest), "--out",
                                       str(tmp / "s.jsonl"), "--no-progress"], env)  # fmt: skip
            r_wall, r_out, _e = timed([*cli, "replay", str(manifest), "--json", "--alert-share",
                                       "0.3", "--window", "30m"], env)  # fmt: skip
            rep = json.loads(r_out)
            score_s = float(s_err.rsplit(" s; pipeline", 1)[0].rsplit("; ", 1)[1])
            crossing = rep["crossings"][0]["at"] if rep["crossings"] else "none"
            print(f"replay vs score, {args.replay_posts} posts ({args.replay_images} distinct "
                  f"photos): score {args.replay_posts / score_s:.1f} posts/s ({score_s:.1f} s "
                  f"run, {s_wall:.1f} s wall), replay {rep['posts_per_s']:.1f} posts/s "
                  f"({rep['seconds']:.1f} s run, {r_wall:.1f} s wall): replay/score "
                  f"{score_s / rep['seconds']:.2f}; first crossing {crossing}")  # fmt: skip


if __name__ == "__main__":
    main()
