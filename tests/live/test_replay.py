"""`backfire replay` in process (colour encoder at the seam): posts put in created_at order
whatever the export's order, the rule run on the posts' own clock, the crossing time, message
and driving posts reported; the report marks the alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.conftest import image_bytes
from tests.support.fake_platforms import BACKLASH_CAPTION, GREEN, RED, SUPPORTIVE_CAPTION
from workers.live.replay import describe, replay, replay_rule


def _export(tmp_path, kinds: list[bool]):
    red, green = tmp_path / "red.jpg", tmp_path / "green.jpg"
    red.write_bytes(image_bytes(RED))
    green.write_bytes(image_bytes(GREEN))
    t0 = datetime(2014, 4, 22, 14, 0, tzinfo=UTC)
    rows = [
        {"post_id": f"p{i:02d}", "image": str(red if b else green), "hashtag": "myNYPD",
         "caption": BACKLASH_CAPTION if b else SUPPORTIVE_CAPTION,
         "created_at": (t0 + timedelta(minutes=5 * i)).isoformat().replace("+00:00", "Z")}
        for i, b in enumerate(kinds)
    ]  # fmt: skip
    path = tmp_path / "posts.jsonl"
    # Written newest first, as search exports are: replay must order them itself.
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    return path, t0


def test_replay_reports_when_the_rolling_share_first_crossed(tmp_path, live_settings,
                                                             colour_pipeline):  # fmt: skip
    # 12 supportive posts, then backlash: in a 30-minute window (6 posts, 5 minutes apart) the
    # share reaches 50 % at the 3rd backlash post (index 14), 1h10 after the first post.
    kinds = [False] * 12 + [True] * 8 + [False] * 10 + [True] * 6
    path, t0 = _export(tmp_path, kinds)
    rule = replay_rule("myNYPD", 0.5, 1800, 5)
    crossed = []
    result = replay(live_settings, path, [rule], pipeline=colour_pipeline, speed=1e6,
                    on_cross=crossed.append, keep_rows=True)  # fmt: skip
    assert result.posts == len(kinds) and result.ok == len(kinds)
    first = result.crossings[0]
    assert first.at == t0 + timedelta(minutes=5 * 14)
    assert result.offset(first.at) == "+1h10"
    # The share falls back below 50 % in the supportive stretch and crosses again later.
    assert len(result.crossings) == 2 and crossed == result.crossings
    assert {p["post_id"] for p in first.payload["top_posts"]} <= {"p12", "p13", "p14"}
    text = "\n".join(describe(result, [rule]))
    assert "would have warned at 22 Apr 2014 15:10:00 UTC (+1h10 after the first post)" in text
    assert "1 more crossings later" in text and "Posts that drove it:" in text
    assert first.payload["text"].splitlines()[0] in text
