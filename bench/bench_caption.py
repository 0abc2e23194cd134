"""Caption scorer speed on one core: model load time and captions/s (prints figures, no asserts).

    .venv/bin/python bench/bench_caption.py [--model FILE] [--data ../shared/data/irony]

Measures the shipped v3 (MPNet adapter, default) and v2 (MiniLM adapter) at each --precision
(default float32 and int8), and v1 (linear), unless --model names one file; prints each one's
ratio to the 2,000 captions/s target and to v1 measured in the same run, and the peak and
resident memory of a fresh process loading it, against one that only imports torch. The load
time of v3 excludes the one-time unpacking of its base weights into the cache (done before
timing).
Captions come from the irony validation split when it is present, else a built-in mix of short
and long captions. Threads are pinned to 1 before numpy/torch load (env vars + threadpoolctl +
torch.set_num_threads).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FALLBACK = [
    "Oh wonderful, my flight got cancelled again. Love it!",
    "Looking forward to the game tonight with my brother",
    "Free delivery, only at #myNYPD 😂",
    "RT @user: Proud to serve our community https://t.co/abc",
    "Thank you to everyone who came to the food drive today. We collected 500 cans.",
] * 200


#: Run in a fresh process: load one model (or none, for the baseline) and print the process's
#: peak and final resident memory in MB (Linux: /proc/self/status).
_MEMORY_CHILD = """
import sys
from pathlib import Path
import torch
if sys.argv[1] != "-":
    from workers.caption import load_model_file
    load_model_file(Path(sys.argv[1]), precision=sys.argv[2])
st = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(st["VmHWM"].split()[0]) // 1024, int(st["VmRSS"].split()[0]) // 1024)
"""


def _load_memory(path: Path | None, precision: str) -> tuple[int, int]:
    """(peak, resident after load) in MB of a process that imports torch and loads `path`."""
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(path) if path else "-",
         precision if precision != "-" else "float32"],
        cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True, text=True, check=True,
    )
    peak, resident = done.stdout.split()
    return int(peak), int(resident)


def _measure(path: Path, texts: list[str], repeat: int, precision: str) -> dict:
    t0 = time.perf_counter()
    from workers.caption import load_model_file

    model = load_model_file(path.resolve(), precision=precision if precision != "-" else "float32")
    t_load = time.perf_counter() - t0
    model.score_batch(["warm up VADER's lexicon"])  # first call loads VADER (~0.1 s), once
    rates = []
    for _ in range(repeat):
        if hasattr(model, "clear_cache"):
            model.clear_cache()  # every pass reads each caption afresh (the cache is for repeats)
        t0 = time.perf_counter()
        model.score_batch(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return {
        "model": model.model_id,
        "size_mb": path.stat().st_size / 1e6,
        "load_s": t_load,
        "memory": _load_memory(path.resolve(), precision),
        "rate": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "irony")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precision", default="float32,int8", help="adapter models, comma-"
                        "separated: float32, int8, bfloat16 (BACKFIRE_CAPTION_PRECISION)")
    args = parser.parse_args()

    with threadpool_limits(limits=1):
        import torch

        torch.set_num_threads(1)
        from workers.caption import LINEAR_MODEL_FILE, MINILM_MODEL_FILE, SHIPPED_MODEL_FILE
        from workers.caption.encoder.files import MPNET, base_dir

        base_dir(MPNET)  # unpack once (a first-ever start), outside the timed load

        if (args.data / "val_text.txt").is_file():
            from workers.caption.training.data import load_split

            texts, source = load_split(args.data, "val").texts, "irony val split"
        else:
            texts, source = FALLBACK, "built-in captions"
        precisions = args.precision.split(",")
        if args.model:
            runs = [(args.model, p) for p in precisions]
        else:  # v1 has no precision setting: once, last, as the baseline
            adapters = [SHIPPED_MODEL_FILE, MINILM_MODEL_FILE]
            runs = [(f, p) for f in adapters for p in precisions] + [(LINEAR_MODEL_FILE, "-")]
        results = [_measure(f, texts, args.repeat, p) for f, p in runs]

    mean_chars = statistics.mean(map(len, texts))
    print(f"captions       {len(texts)} from {source}, mean {mean_chars:.0f} chars, one core")
    baseline = results[-1]["rate"]
    torch_peak, _ = _load_memory(None, "-")
    print(f"memory         a process that only imports torch peaks at {torch_peak:,} MB")
    for r in results:
        print(f"model          {r['model']} ({r['size_mb']:.1f} MB file)")
        print(f"  load         {r['load_s'] * 1000:.0f} ms (first load in this process)")
        peak, resident = r["memory"]
        print(f"  memory       loading peaks at {peak:,} MB (+{peak - torch_peak:,} over torch), "
              f"{resident:,} MB resident after (a fresh process each)")
        print(f"  throughput   {r['rate']:,.0f} captions/s (median of {args.repeat}; "
              f"min {r['min']:,.0f}, max {r['max']:,.0f})")
        print(f"  vs target    {r['rate'] / 2000:.2f} x the 2,000 captions/s target; "
              f"{r['rate'] / baseline:.3f} x {results[-1]['model']}")


if __name__ == "__main__":
    main()
