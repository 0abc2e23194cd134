"""The OpenAPI document as a contract: every error each operation can answer is listed, as
`application/problem+json` (what the one problem handler sends), with the headers it carries.

Routes declare their errors with `problems(...)`; `install` rewrites the error responses'
media type (FastAPI documents every response model as application/json) and puts the problem
schema in place of FastAPI's own validation-error schema, which this API never sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.problems import MEDIA_TYPE
from service.schemas import Problem

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the same request again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "How to authenticate: `Bearer`.",
        "schema": {"type": "string"},
    }
}
_DESCRIPTIONS = {
    400: "Malformed body: a multipart body that cannot be parsed, or JSON that is not JSON",
    401: "No API key, or one that is not valid",
    403: "Revoked API key",
    404: "No such resource for this API key",
    413: "Body over the cap (`BACKFIRE_API_MAX_BODY_BYTES`), or an image URL's body over "
    "`BACKFIRE_MAX_IMAGE_BYTES`",
    415: "Not an accepted image format, or a body that is neither multipart nor JSON",
    422: "Invalid fields (`errors` lists them), or an image or URL that cannot be used",
    429: "Over a limit: requests per key (`rate-limited`), refused keys per client address "
    "(`too-many-auth-failures`) or image downloads in flight per key (`too-many-downloads`)",
    503: "The database does not answer, or every image download slot is busy",
    507: "The media disk is full: nothing was stored; send the same request again later",
}
#: Errors every authenticated operation can answer.
AUTH = (401, 403, 429, 503)


def problems(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented as a problem document, with
    Retry-After where the API sends it. `d404="..."` overrides one description."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": Problem,
            "description": descriptions.get(f"d{code}", _DESCRIPTIONS[code]),
        }
        if code in (429, 503, 507):
            entry["headers"] = _RETRY_AFTER
        elif code == 401:
            entry["headers"] = _WWW_AUTHENTICATE
        out[code] = entry
    return out


def _problem_json(schema: dict[str, Any]) -> None:
    ref = {"$ref": "#/components/schemas/Problem"}
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            for status, response in op.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {MEDIA_TYPE: {"schema": ref}}
                    if status == "422":
                        response["description"] = _DESCRIPTIONS[422]
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _problem_json(build())  # build() caches the document in app.openapi_schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
