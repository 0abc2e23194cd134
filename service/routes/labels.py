"""/v1/posts/{id}/labels: a person's labels of a post (scenes, verdict, irony), per key, with
who gave them and when. What `backfire eval --from-store` and `backfire calibrate --from-store`
measure the pipeline against."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from service.deps import Ctx, CurrentKey
from service.openapi import AUTH, problems
from service.schemas import LabelsIn, LabelsOut
from workers.errors import InvalidRequest
from workers.scenes.prompts import load_prompt_set
from workers.store import labels as repo

router = APIRouter(prefix="/v1/posts", tags=["labels"], responses=problems(*AUTH))

_ERRORS = problems(
    404, 422, d404="No such post for this API key",
    d422="Unknown scene or verdict, or no label given",
)  # fmt: skip


@lru_cache(maxsize=4)
def _scene_names(path: Path, mtime: float) -> tuple[str, ...]:
    return tuple(load_prompt_set(path).names)


def scene_names(path: Path) -> tuple[str, ...]:
    """The scenes labels may name: the deployment's prompt set (re-read when the file changes)."""
    return _scene_names(path, path.stat().st_mtime if path.exists() else 0.0)


@router.put(
    "/{id}/labels", response_model=LabelsOut, summary="Label a post",
    responses={**_ERRORS, **problems(400)},  # a body that is not JSON
)  # fmt: skip
async def put_labels(id: str, body: LabelsIn, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    """Sets each label given (`null` removes one); labels not given are kept. `scenes` is the
    complete list of scenes the photo shows (`[]`: none of them)."""
    given = {k: getattr(body, k) for k in body.model_fields_set}
    if not given:
        raise InvalidRequest("Give at least one label: scenes, verdict or ironic.")
    if given.get("scenes") is not None:
        known = scene_names(ctx.settings.scenes_file)
        unknown = sorted(set(given["scenes"]) - set(known))
        if unknown:
            raise InvalidRequest(
                f"Unknown scene(s) {', '.join(unknown)}; this deployment's scenes are "
                f"{', '.join(known)}."
            )
        given["scenes"] = sorted(set(given["scenes"]))
    return await run_in_threadpool(repo.set_labels, ctx.db, key.key_id, id, given, key.key_id)


@router.get("/{id}/labels", response_model=LabelsOut, responses=_ERRORS, summary="A post's labels")
def get_labels(id: str, ctx: Ctx, key: CurrentKey) -> dict[str, Any]:
    return repo.get_labels(ctx.db, key.key_id, id)
