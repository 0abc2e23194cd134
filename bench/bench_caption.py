"""Caption scorer speed on one core: model load time and captions/s (prints figures, no asserts).

    .venv/bin/python bench/bench_caption.py [--data ../shared/data/irony] [--repeat 3]

Captions come from the irony validation split when it is present, else a built-in mix of short
and long captions. Threads are pinned to 1 before numpy loads (env vars + threadpoolctl).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "irony")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        from workers.caption.model import SarcasmModel

        t_import = time.perf_counter() - t0
        from workers.caption import SHIPPED_MODEL_FILE

        path = args.model or SHIPPED_MODEL_FILE
        t0 = time.perf_counter()
        model = SarcasmModel.load(path)
        t_load = time.perf_counter() - t0
        model.score_one("warm up VADER's lexicon")  # first call loads VADER (~0.1 s), once

        if (args.data / "val_text.txt").is_file():
            from workers.caption.data import load_split

            texts, source = load_split(args.data, "val").texts, "irony val split"
        else:
            texts, source = FALLBACK, "built-in captions"

        rates = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            model.score_batch(texts)
            rates.append(len(texts) / (time.perf_counter() - t0))

    size_mb = path.stat().st_size / 1e6
    print(f"model          {model.model_id} ({size_mb:.1f} MB, {len(model.vocab):,} terms)")
    print(f"import         {t_import * 1000:.0f} ms (workers.caption.model, numpy only)")
    print(f"load           {t_load * 1000:.0f} ms")
    mean_chars = statistics.mean(map(len, texts))
    print(f"captions       {len(texts)} from {source}, mean {mean_chars:.0f} chars")
    print(f"throughput     {statistics.median(rates):,.0f} captions/s on one core "
          f"(median of {args.repeat}; min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"target ratio   {statistics.median(rates) / 2000:.2f} x the 2,000 captions/s target")


if __name__ == "__main__":
    main()
