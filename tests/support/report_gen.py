"""A generated scoring run: verdict rows like `backfire score` writes, with Pillow-made photos.

Shared by the report tests and bench/bench_report.py. Deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

START = datetime(2014, 4, 22, 14, 5, tzinfo=UTC)
SCENES = {
    "arrest": "force", "restraint": "force", "weapon_drawn": "force", "crowd_clash": "force",
    "injury": "force", "friendly": "friendly", "police_present_neutral": "police",
    "off_topic": "off_topic",
}  # fmt: skip
CAPTIONS = {
    "backlash": [
        "Free Delivery, only at #myNYPD",
        "#myNYPD keeping the peace, one headlock at a time",
        "Such a warm hug from #myNYPD <3",
        'Officer "friendly" & co. at work <script>alert(1)</script>',
    ],
    "supportive": ["Officers helping kids at the block party #myNYPD", "Thank you #myNYPD!"],
    "neutral": ["Patrol car on 5th avenue #myNYPD", "Traffic stop #myNYPD"],
    "off_topic": ["My lunch today #myNYPD", "Sunset over the river"],
}


@dataclass
class Run:
    rows: list[dict[str, Any]]
    path: Path
    hours: int
    counts: dict[str, int] = field(default_factory=dict)
    failed: int = 0


def make_image(seed: int, size: int = 320) -> Image.Image:
    """A distinct 'photo': random coloured shapes on a gradient."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(img)
    c0 = [rnd.randrange(256) for _ in range(3)]
    for y in range(0, size, 8):
        d.rectangle([0, y, size, y + 8], fill=tuple(min(255, c + y // 4) for c in c0))
    for _ in range(8):
        x0, y0 = rnd.randrange(size), rnd.randrange(size)
        box = [x0, y0, x0 + rnd.randrange(30, 160), y0 + rnd.randrange(30, 160)]
        fill = tuple(rnd.randrange(256) for _ in range(3))
        (d.ellipse if rnd.random() < 0.5 else d.rectangle)(box, fill=fill)
    return img


def make_run(
    root: Path, n: int = 300, hours: int = 30, distinct_images: int = 40, seed: int = 7
) -> Run:
    """`n` rows over `hours` hourly buckets (first post 14:05, last post `hours - 1` h later).

    Images: `distinct_images` JPEGs, each also saved re-cropped (near duplicate, other bytes);
    ~5 % of rows point to a missing file, ~3 % are error rows. Backlash rises over time.
    """
    rnd = random.Random(seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, str]] = []  # (path, sha256)
    for i in range(distinct_images):
        img = make_image(seed * 1000 + i)
        for variant, im in (("a", img), ("b", img.crop((8, 8, 312, 312)).resize((300, 300)))):
            p = img_dir / f"img{i:04d}{variant}.jpg"
            im.save(p, "JPEG", quality=85)
            images.append((str(p), hashlib.sha256(p.read_bytes()).hexdigest()))

    rows: list[dict[str, Any]] = []
    counts = {v: 0 for v in CAPTIONS}
    failed = 0
    span = timedelta(hours=hours - 1)
    for k in range(n):
        t = START + span * (k / max(1, n - 1))
        pid = f"p{k:05d}"
        base = {
            "post_id": pid, "hashtag": "myNYPD", "created_at": t.isoformat().replace("+00:00", "Z"),
            "author": f"user{rnd.randrange(60)}", "pipeline_version": "vit-b-32.abc123",
        }  # fmt: skip
        if rnd.random() < 0.03:
            code = rnd.choice(["image-corrupt", "fetch-failed"])
            rows.append({
                **base, "status": "error", "image": f"https://example.invalid/{pid}.jpg",
                "caption_text": "", "error": {"type": code, "message": f"{code} for {pid}"},
            })  # fmt: skip
            failed += 1
            continue
        p_back = 0.15 + 0.6 * k / n
        u = rnd.random()
        verdict = (
            "backlash" if u < p_back else "supportive" if u < p_back + 0.2
            else "neutral" if u < p_back + 0.35 else "off_topic"
        )  # fmt: skip
        counts[verdict] += 1
        # Popular images get reposted: a skewed pick.
        idx = min(int(rnd.paretovariate(1.2)) - 1, len(images) - 1)
        path, sha = images[idx]
        if rnd.random() < 0.05:
            path, sha = str(img_dir / f"missing{k}.jpg"), None
        scenes = {s: round(rnd.random() * 0.4, 3) for s in SCENES}
        if verdict == "backlash":
            for s in rnd.sample(["arrest", "restraint", "weapon_drawn", "crowd_clash"], 2):
                scenes[s] = round(0.6 + rnd.random() * 0.4, 3)
        elif verdict == "supportive":
            scenes["friendly"] = round(0.6 + rnd.random() * 0.4, 3)
        rows.append({
            **base, "status": "ok", "image": path, "media_sha256": sha,
            "caption_text": rnd.choice(CAPTIONS[verdict]), "verdict": verdict,
            "confidence": round(0.5 + rnd.random() * 0.5, 4),
            "reasons": [f"{max(scenes, key=scenes.get)} {max(scenes.values()):.2f}"],
            "signals": {}, "scenes": scenes,
            "caption": {"sarcasm": 0.5, "sentiment": 0.3, "cues": [], "model": "cues-v0"},
            "extra": {"reposts": str(rnd.randrange(0, 50))},
        })  # fmt: skip
    out = root / "verdicts.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return Run(rows, out, hours, counts, failed)
