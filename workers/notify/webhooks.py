"""Webhook delivery: the finished post POSTed to its `callback_url`, signed with HMAC-SHA256.

Signature header: `Backfire-Signature: t=<unix seconds>,v1=<hex hmac(secret, "<t>.<body>")>`.
Receivers recompute it over the raw body and reject old timestamps (replays). The URL is vetted
again before each attempt (SSRF), the POST goes to the vetted address itself (no second DNS
lookup, so no DNS rebinding), and redirects are not followed: `workers.net.post`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from workers.config import Settings
from workers.net.guard import FetchPolicy
from workers.net.post import PostOutcome, post_json
from workers.store.posts import PostView
from workers.store.views import post_resource

SIGNATURE_HEADER = "Backfire-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """For receivers (and tests): constant-time check of a `Backfire-Signature` header."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, ts), header)


def deliver(settings: Settings, view: PostView) -> PostOutcome:
    """One attempt; `retry` in the outcome says whether another attempt could succeed."""
    url = view.post.callback_url
    if not url or not settings.webhook_secret:
        return PostOutcome(False, error="no callback URL or no webhook secret", retry=False)
    body = json.dumps({"event": "post.finished", "post": post_resource(view)}).encode()
    headers = {
        SIGNATURE_HEADER: sign(settings.webhook_secret, body, int(time.time())),
        "User-Agent": "backfire-webhooks/0.1",
    }
    return post_json(
        url, body, headers, FetchPolicy.from_settings(settings), settings.webhook_timeout_s
    )
