"""Start-up of `backfire score` on one photo (issue 20, part 3): wall time and peak RSS, with
warm caches, against the same run with the int8 caption cache emptied before each start (what
every start cost before that cache existed), measured interleaved in one run. Also where one
warm start's time goes (imports, the scene model, the caption model, scoring), from a profile.

    .venv/bin/python bench/bench_startup.py [--runs 5]

ViT-B-32 with random weights (speed does not depend on the values) as a real safetensors
checkpoint, the default caption model (v3, int8), one photo from ../shared/data/photos/bench
when present (else a generated 1500 px JPEG). No timing asserts: figures only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.bench_engine import make_checkpoint  # noqa: E402
from bench.peak_rss import run_with_peak_rss  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "photos" / "bench"
BACKFIRE = Path(sys.executable).parent / "backfire"
#: Profile entries reported for the split: (file suffix, function) -> what it is.
PARTS = {
    ("cli/score.py", "run_score"): "the score command after the CLI's own imports",
    ("scoring/pipeline.py", "from_settings"): "  building the pipeline (both models)",
    ("scenes/encoder.py", "__init__"): "    scene model: torch + open_clip imports, CLIP load",
    ("caption/__init__.py", "load_caption_scorer"): "    caption model (int8, from its cache)",
}


def one_post(tmp: Path) -> Path:
    photo = next(iter(sorted(PHOTOS.glob("*.jpg"))), None) if PHOTOS.is_dir() else None
    if photo is None:
        from PIL import Image

        photo = tmp / "generated.jpg"
        Image.new("RGB", (1500, 1000), (120, 90, 60)).save(photo, quality=90)
    csv = tmp / "one.csv"
    csv.write_text(f"post_id,image,caption\np1,{photo},Thanks NYPD for keeping us safe\n")
    return csv


def start(csv: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    done, peak = run_with_peak_rss([str(BACKFIRE), "score", str(csv), "--out", str(out)],
                                   env=env)  # fmt: skip
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"backfire score exit {done.returncode}: {done.stderr[-2000:]}")
    return wall, peak


def split(csv: Path, out: Path, env: dict[str, str], tmp: Path) -> None:
    import pstats

    prof = tmp / "start.prof"
    out.unlink(missing_ok=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "workers.cli.app",
                    "score", str(csv), "--out", str(out)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    wall = time.perf_counter() - t
    stats = pstats.Stats(str(prof))
    cum: dict[tuple[str, str], float] = {}
    for (path, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        for suffix, func in PARTS:
            if path.endswith(suffix) and name == func:
                cum[(suffix, func)] = max(cum.get((suffix, func), 0.0), row[3])
    print(f"\none warm start under cProfile: {wall:.2f} s wall (profiling adds to it)")
    for key, label in PARTS.items():
        print(f"  {label:<62} {cum.get(key, float('nan')):6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores: compare within this run)")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        env = {**os.environ, "BACKFIRE_CHECKPOINT": str(make_checkpoint(tmp)),
               "BACKFIRE_CACHE_DIR": str(tmp / "cache"), "BACKFIRE_DATA_DIR": str(tmp / "data"),
               "BACKFIRE_OFFLINE": "1"}  # fmt: skip
        csv, out = one_post(tmp), tmp / "v.jsonl"
        first, first_peak = start(csv, out, env)
        print(f"first start (unpacks the caption base, builds every cache): {first:.1f} s, "
              f"peak {first_peak:.0f} MB")  # fmt: skip
        warm: list[tuple[float, float]] = []
        rebuilt: list[tuple[float, float]] = []
        for _ in range(args.runs):
            warm.append(start(csv, out, env))
            shutil.rmtree(tmp / "cache" / "caption-int8", ignore_errors=True)
            rebuilt.append(start(csv, out, env))  # builds the int8 caption layers again
        for label, xs in (("warm (every cache filled)", warm),
                          ("int8 caption layers built at start (no caption cache)", rebuilt)):
            walls, peaks = [w for w, _ in xs], [p for _, p in xs]
            print(f"  {label:<56} wall median {statistics.median(walls):5.2f} s "
                  f"(min {min(walls):5.2f}), peak RSS median {statistics.median(peaks):5.0f} MB")
        ratio = statistics.median(w for w, _ in rebuilt) / statistics.median(w for w, _ in warm)
        print(f"  built / cached wall: {ratio:.2f}x")
        split(csv, out, env, tmp)


if __name__ == "__main__":
    main()
