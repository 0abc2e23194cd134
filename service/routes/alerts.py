"""/v1/alerts: early-warning rules of the calling key (workers/notify/ does the work).

A key sees, and can remove, only its own rules (another key's rule is a plain 404), and its
rules watch only its own posts. The webhook URL passes the SSRF checks before anything is stored;
a refusal is a problem document naming the reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from service.deps import Ctx, CurrentKey
from service.openapi import AUTH, problems
from service.schemas import AlertIn, AlertList, AlertOut
from workers.domain import format_duration
from workers.errors import NotFound
from workers.notify.rules import AlertRule, RuleStore, add_rule, remove_rule

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=problems(*AUTH))
_NO_RULE = problems(404, d404="No such rule for this API key")


def _out(rule: AlertRule) -> dict[str, Any]:
    last = rule.deliveries[-1] if rule.deliveries else None
    return {
        "id": rule.id,
        "hashtag": rule.hashtag,
        "backlash_share": rule.threshold,
        "window": format_duration(rule.window_s),
        "window_seconds": rule.window_s,
        "min_posts": rule.min_posts,
        "webhook": rule.webhook,
        "created_at": rule.created_at,
        "armed": rule.armed,
        "fired": rule.fired,
        "last_delivery": last.model_dump(exclude={"ok"}) if last else None,
        "links": {"self": f"/v1/alerts/{rule.id}"},
    }


@router.post(
    "",
    status_code=201,
    response_model=AlertOut,
    responses=problems(
        400, 413, 422, d422="Invalid fields, or a webhook URL refused by the SSRF checks"
    ),
    summary="Add an alert rule",
)
def create_alert(body: AlertIn, ctx: Ctx, key: CurrentKey, response: Response) -> dict[str, Any]:
    """Watch a hashtag among this key's posts; POST the webhook once per threshold crossing."""
    rule = add_rule(
        ctx.settings, hashtag=body.hashtag, threshold=body.backlash_share, window=body.window,
        min_posts=body.min_posts, webhook=body.webhook, owner=key.key_id, db=ctx.db,
    )  # fmt: skip
    response.headers["Location"] = f"/v1/alerts/{rule.id}"
    return _out(rule)


@router.get("", response_model=AlertList, summary="This key's alert rules")
def list_alerts(ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    """Every rule of this key, with its state (armed, crossings) and its last delivery."""
    return {"items": [_out(r) for r in RuleStore(ctx.db).load(owner=key.key_id)]}


@router.get("/{rule_id}", response_model=AlertOut, responses=_NO_RULE, summary="One alert rule")
def get_alert(rule_id: str, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    for rule in RuleStore(ctx.db).load(owner=key.key_id):
        if rule.id == rule_id:
            return _out(rule)
    raise NotFound(f"No alert rule {rule_id!r} for this API key.")


@router.delete(
    "/{rule_id}", status_code=204, responses=_NO_RULE, summary="Remove an alert rule"
)
def delete_alert(rule_id: str, ctx: Ctx, key: CurrentKey) -> Response:
    if not remove_rule(ctx.settings, rule_id, owner=key.key_id, db=ctx.db):
        raise NotFound(f"No alert rule {rule_id!r} for this API key.")
    return Response(status_code=204)
