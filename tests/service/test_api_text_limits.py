"""Values the store cannot hold are refused at the API with a 422 problem, on SQLite and on
PostgreSQL alike (found by the long schemathesis run: PostgreSQL answered 500 to a NUL character
in a hashtag and to a rule's 13-digit `min_posts`, and a label `ironic: 0` was taken as false)."""

from __future__ import annotations

import pytest

from tests.conftest import image_bytes

NUL = "\x00"


def _problem(r, field: str) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 422
    assert field in r.text
    return r.text


def test_nul_characters_are_refused_in_every_text_the_store_keeps(client, auth) -> None:
    files = {"image": ("p.png", image_bytes(fmt="PNG"), "image/png")}
    for field in ("caption", "post_id", "hashtag", "author"):
        r = client.post("/v1/posts", files=files, headers=auth, data={field: f"a{NUL}b"})
        assert "NUL" in _problem(r, field)
    r = client.post("/v1/posts", headers=auth,
                    json={"image_url": f"http://127.0.0.1/a{NUL}.jpg", "caption": "hi"})
    _problem(r, "image_url")
    _problem(client.get("/v1/posts", headers=auth, params={"hashtag": f"my{NUL}NYPD"}), "hashtag")
    _problem(client.get("/v1/hashtags/my%00NYPD/summary", headers=auth), "tag")
    _problem(client.get("/v1/hashtags/my%00NYPD/report", headers=auth), "tag")
    # Nothing was stored by the refusals, and the same requests without the NUL work.
    assert client.get("/v1/posts", headers=auth).json()["items"] == []
    r = client.post("/v1/posts", files=files, headers=auth, data={"caption": "ab"})
    assert r.status_code == 202, r.text
    assert client.get("/v1/hashtags/myNYPD/summary", headers=auth).status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"min_posts": 7345607232861}, "min_posts"),
        ({"window": 10**12}, "window"),
        ({"window": "400d"}, "window"),
        ({"hashtag": f"my{NUL}NYPD"}, "hashtag"),
    ],
    ids=["min-posts-beyond-an-integer-column", "window-seconds-huge", "window-400-days",
         "nul-in-hashtag"],
)
def test_alert_rules_beyond_what_a_rule_can_be_are_422(client, auth, change, field) -> None:
    rule = {"hashtag": "myNYPD", "webhook": "http://127.0.0.1:9/hook", "window": "30m",
            "min_posts": 5, "backlash_share": 0.3} | change
    _problem(client.post("/v1/alerts", headers=auth, json=rule), field)
    assert client.get("/v1/alerts", headers=auth).json()["items"] == []


def test_the_longest_window_and_the_most_posts_a_rule_may_ask_for_are_accepted(
    client, auth
) -> None:
    from service.schemas import MAX_MIN_POSTS

    rule = {"hashtag": "myNYPD", "webhook": "http://127.0.0.1:9/hook", "window": "30d",
            "min_posts": MAX_MIN_POSTS, "backlash_share": 0.3}
    r = client.post("/v1/alerts", headers=auth, json=rule)
    assert r.status_code == 201, r.text
    assert r.json()["window_seconds"] == 30 * 86400 and r.json()["min_posts"] == MAX_MIN_POSTS


def test_a_label_must_be_a_real_boolean(client, auth) -> None:
    files = {"image": ("p.png", image_bytes(fmt="PNG"), "image/png")}
    pid = client.post("/v1/posts", files=files, headers=auth, data={"post_id": "x"}).json()["id"]
    for value in (0, 1, "true", "yes"):
        _problem(client.put(f"/v1/posts/{pid}/labels", headers=auth, json={"ironic": value}),
                 "ironic")
    assert client.get(f"/v1/posts/{pid}/labels", headers=auth).json()["labels"] == {}
    r = client.put(f"/v1/posts/{pid}/labels", headers=auth, json={"ironic": False})
    assert r.status_code == 200 and r.json()["labels"]["ironic"]["value"] is False


def test_a_cursor_beyond_any_stored_post_is_an_empty_page(client, auth) -> None:
    files = {"image": ("p.png", image_bytes(fmt="PNG"), "image/png")}
    assert client.post("/v1/posts", files=files, headers=auth).status_code == 202
    for cursor in ("p2147483648", "p58293572734", "p999999999999999999"):
        r = client.get("/v1/posts", headers=auth, params={"cursor": cursor})
        assert r.status_code == 200, r.text
        assert r.json() == {"items": [], "next_cursor": None}


def test_a_re_sent_post_id_with_a_file_that_is_no_image_is_refused_not_a_duplicate(
    client, auth
) -> None:
    files = {"image": ("p.png", image_bytes(fmt="PNG"), "image/png")}
    first = client.post("/v1/posts", files=files, headers=auth, data={"post_id": "0"})
    assert first.status_code == 202 and first.json()["duplicate"] is False
    junk = {"image": ("image.zip", b"PK\x03\x04" + b"\0" * 60, "application/zip")}
    r = client.post("/v1/posts", files=junk, headers=auth, data={"post_id": "0"})
    assert r.status_code in (415, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    # The same id with its photo again is still the duplicate it always was.
    again = client.post("/v1/posts", files=files, headers=auth, data={"post_id": "0"})
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]


def test_an_empty_idempotency_key_is_refused_every_time(client, auth) -> None:
    files = {"image": ("p.png", image_bytes(fmt="PNG"), "image/png")}
    for _ in range(2):  # the second one was PostgreSQL's unique-constraint 500
        r = client.post("/v1/posts", files=files, headers=auth | {"Idempotency-Key": ""})
        _problem(r, "idempotency-key")
    assert client.get("/v1/posts", headers=auth).json()["items"] == []
