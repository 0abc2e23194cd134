"""Evaluation and calibration benchmark (issue 18). Prints figures measured in this one run.

    .venv/bin/python bench/bench_eval.py [--posts 2000] [--caption-model cues-v0]

2,000 generated labelled photos (distinct, 640×480 JPEG) with scene, verdict and irony labels,
open_clip ViT-B-32 with random weights saved as a real safetensors checkpoint (speed does not
depend on weight values), every command a subprocess like a user's:
  1. `backfire eval` cold (empty image-embedding cache): seconds, model seconds per post, peak RSS;
  2. `backfire eval` warm (every embedding and caption score from the disk caches): seconds,
     peak RSS;
  3. `backfire calibrate` warm: seconds (target < 30 s on 2 cores), peak RSS;
  4. `backfire calibrate` cold, in a fresh cache: seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.bench_engine import make_checkpoint  # noqa: E402
from bench.peak_rss import run_with_peak_rss  # noqa: E402

SCENES = ["arrest", "restraint", "weapon_drawn", "crowd_clash", "injury", "friendly",
          "police_present_neutral", "off_topic"]  # fmt: skip
CAPTIONS = ["Free delivery, only at #myNYPD", "Thank you officers! #myNYPD",
            "Just a photo with a member of the NYPD", "Lunch today #myNYPD"]  # fmt: skip


def make_labelled(folder: Path, n: int) -> Path:
    from tests.support.report_gen import make_image

    rnd = random.Random(18)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["post_id,image,caption,scenes,verdict,ironic"]
    for i in range(n):
        p = folder / f"img{i:05d}.jpg"
        make_image(i, size=320).resize((640, 480)).save(p, "JPEG", quality=85)
        present = [s for s in SCENES if rnd.random() < 0.15]
        verdict = rnd.choice(["backlash", "supportive", "neutral", "off_topic"])
        lines.append(f'p{i},{p.name},"{CAPTIONS[i % 4]} {i}",{";".join(present) or "none"},'
                     f"{verdict},{rnd.randrange(2)}")  # fmt: skip
    path = folder / "labelled.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(label: str, args: list[str], env: dict[str, str], posts: int) -> float:
    backfire = str(Path(sys.executable).with_name("backfire"))
    t = time.perf_counter()
    res, peak = run_with_peak_rss([backfire, *args], env=env)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        print(f"{label}: FAILED ({res.returncode}): {res.stderr[-800:]}")
        return wall
    m = re.search(r"(\d+) from the embedding cache, (\d+) encoded in ([0-9.]+) s", res.stderr)
    model = ""
    if m:
        cached, encoded, model_s = int(m.group(1)), int(m.group(2)), float(m.group(3))
        per = f", {1000 * model_s / encoded:.0f} ms model time per encoded image" if encoded else ""
        model = f"; {cached} embeddings from cache, {encoded} encoded ({model_s:.1f} s{per})"
    c = re.search(r"(\d+) from the caption-score cache, (\d+) scored in ([0-9.]+) s", res.stderr)
    if c:
        model += f"; captions: {c.group(1)} from cache, {c.group(2)} scored ({c.group(3)} s)"
    print(f"{label}: {wall:6.1f} s wall for {posts} posts, peak RSS {peak:6.0f} MB{model}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=2000)
    ap.add_argument("--caption-model", default=None,
                    help="BACKFIRE_CAPTION_MODEL_FILE for eval (default: shipped v3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        labelled = make_labelled(tmp / "labelled", args.posts)
        print(f"{args.posts} labelled photos generated in {time.perf_counter() - t:.1f} s; "
              f"cores: {os.cpu_count()}")  # fmt: skip
        ckpt = make_checkpoint(tmp)
        env = {
            **os.environ, "BACKFIRE_CHECKPOINT": str(ckpt), "BACKFIRE_OFFLINE": "1",
            "BACKFIRE_CACHE_DIR": str(tmp / "cache"), "BACKFIRE_BATCH_SIZE": "8",
        }  # fmt: skip
        if args.caption_model:
            env["BACKFIRE_CAPTION_MODEL_FILE"] = args.caption_model
        ev = ["eval", str(labelled), "--json", "--bootstrap", "200"]
        cold = run("eval cold     ", ev, env, args.posts)
        warm = run("eval warm     ", ev, env, args.posts)
        cal = ["calibrate", str(labelled), "--out", str(tmp / "my-scenes.yaml"), "--json"]
        cal_warm = run("calibrate warm", cal, env, args.posts)
        fresh = {**env, "BACKFIRE_CACHE_DIR": str(tmp / "cache2")}
        cal_cold = run("calibrate cold", cal, fresh, args.posts)
        print(f"warm / cold: eval {warm / cold:.3f}, calibrate {cal_warm / cal_cold:.3f}; "
              f"warm calibrate {'meets' if cal_warm < 30 else 'MISSES'} the < 30 s target")


if __name__ == "__main__":
    main()
