"""The waits a platform asks for, as each writes them, and Mastodon's Link header."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from workers.sources.live import asked_wait, base_url
from workers.sources.live.mastodon import link_min_id

NOW = 1_800_000_000.0


def test_retry_after_in_seconds_or_as_an_http_date():
    assert asked_wait({"retry-after": "7"}, NOW) == 7
    when = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    assert asked_wait({"retry-after": when}, NOW) == 30


def test_reset_headers_of_x_bluesky_and_mastodon():
    assert asked_wait({"x-rate-limit-reset": str(int(NOW) + 12)}, NOW) == 12  # X: epoch s
    assert asked_wait({"ratelimit-reset": str(int(NOW) + 5)}, NOW) == 5  # Bluesky: epoch s
    iso = datetime.fromtimestamp(NOW + 60, UTC).isoformat().replace("+00:00", "Z")
    assert asked_wait({"x-ratelimit-reset": iso}, NOW) == 60  # Mastodon: ISO 8601
    assert asked_wait({"retry-after": "3", "x-rate-limit-reset": str(int(NOW) + 99)}, NOW) == 3
    assert asked_wait({}, NOW) is None
    assert asked_wait({"x-rate-limit-reset": str(int(NOW) - 10)}, NOW) == 0  # already past


def test_mastodon_link_header_prev_gives_the_min_id():
    link = ('<https://m.example/api/v1/timelines/tag/x?max_id=101>; rel="next", '
            '<https://m.example/api/v1/timelines/tag/x?min_id=140>; rel="prev"')  # fmt: skip
    assert link_min_id(link) == "140"
    assert link_min_id(None) is None


def test_an_instance_is_a_host_or_a_base_url():
    assert base_url("mastodon.social", "x") == "https://mastodon.social"
    assert base_url("http://127.0.0.1:8080/", "x") == "http://127.0.0.1:8080"
    assert base_url("", "public.api.bsky.app") == "https://public.api.bsky.app"
