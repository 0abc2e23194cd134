"""Report generation for a big campaign: time and file size for 100,000 posts.

Targets (issue 6): under 10 s and under 15 MB. Rows are generated like a real run's output:
2,000 distinct Pillow-made photos (each also re-cropped) on disk, reposted with a skewed
popularity, over 30 days (daily buckets). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_report.py [--posts 100000] [--images 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.report_gen import make_run  # noqa: E402
from workers.config import Settings  # noqa: E402
from workers.report import build_report  # noqa: E402
from workers.report.data import read_rows  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=2_000)
    ap.add_argument("--days", type=int, default=30)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        run = make_run(root, n=a.posts, hours=a.days * 24, distinct_images=a.images)
        print(f"generated {a.posts:,} rows, {2 * a.images:,} image files in "
              f"{time.perf_counter() - t:.1f} s (not part of the figure below)")  # fmt: skip
        settings = Settings(cache_dir=root / "cache", data_dir=root / "data")
        t0 = time.perf_counter()
        rows = list(read_rows(run.path))
        t1 = time.perf_counter()
        model, html = build_report(rows, settings=settings, base_dir=root)
        t2 = time.perf_counter()
        out = root / "report.html"
        out.write_text(html, encoding="utf-8")
        size = out.stat().st_size
        thumbs = html.count('src="data:image/jpeg')
        print(f"read rows      {t1 - t0:6.2f} s")
        print(f"build + render {t2 - t1:6.2f} s  ({len(model.buckets)} {model.bucket_unit} buckets,"
              f" {len(model.clusters)} clusters shown, {thumbs} thumbnails)")  # fmt: skip
        print(f"total          {t2 - t0:6.2f} s   target < 10 s")
        print(f"file size      {size / 1e6:6.2f} MB  target < 15 MB")


if __name__ == "__main__":
    main()
