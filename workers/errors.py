"""The error tree. Each boundary (CLI, HTTP, Celery, per-post error rows) translates these once.

Every error carries a stable machine `code` (used as the problem-details `type` suffix and in
error rows) and a message written for a person.
"""

from __future__ import annotations


class BackfireError(Exception):
    code = "backfire-error"
    #: HTTP status the API answers with when this reaches the boundary.
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_record(self) -> dict[str, str]:
        return {"type": self.code, "message": self.message}


# --- configuration and usage -------------------------------------------------------------------
class ConfigError(BackfireError):
    """A settings value, prompt file or policy file is wrong."""

    code = "config-invalid"


class UsageError(BackfireError):
    """The user asked for something that cannot work (bad path, unknown format...)."""

    code = "usage"
    http_status = 400


class InputFormatError(UsageError):
    """An input file (manifest, export) cannot be read."""

    code = "input-format"


# --- models ------------------------------------------------------------------------------------
class ModelError(BackfireError):
    code = "model-error"


class WeightsMissing(ModelError):
    """Weights are not on disk and may not (or could not) be downloaded."""

    code = "weights-missing"


# --- media: per-post errors ----------------------------------------------------------------------
class MediaError(BackfireError):
    """The post's image cannot be used. Fails that post only, never the batch."""

    code = "media-invalid"
    http_status = 422


class EmptyImage(MediaError):
    code = "image-empty"


class UnsupportedFormat(MediaError):
    code = "image-unsupported-format"
    http_status = 415


class TruncatedImage(MediaError):
    code = "image-truncated"


class ImageTooLarge(MediaError):
    code = "image-too-large"


class ImageTooElongated(MediaError):
    """A strip (1×65,000 px and the like), not a photo: the model's resize to its input size
    on the short side would blow it up to millions of pixels."""

    code = "image-too-elongated"


class CorruptImage(MediaError):
    code = "image-corrupt"


class MediaNotFound(MediaError):
    code = "media-not-found"


# --- fetching ----------------------------------------------------------------------------------
class FetchError(MediaError):
    code = "fetch-failed"


class BlockedAddress(FetchError):
    code = "fetch-blocked-address"


class FetchTooLarge(FetchError):
    code = "fetch-too-large"
    http_status = 413


class FetchTimeout(FetchError):
    code = "fetch-timeout"


class FetchHTTPError(FetchError):
    code = "fetch-http-error"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- API and queue -----------------------------------------------------------------------------
class ApiError(BackfireError):
    code = "api-error"
    http_status = 400


class Unauthenticated(ApiError):
    code = "unauthenticated"
    http_status = 401


class KeyRevoked(ApiError):
    code = "api-key-revoked"
    http_status = 403


class NotFound(ApiError):
    code = "not-found"
    http_status = 404


class RateLimited(ApiError):
    code = "rate-limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyDownloads(RateLimited):
    """This key already has its share of `image_url` downloads in flight."""

    code = "too-many-downloads"


class TooManyAuthFailures(RateLimited):
    """This client address sent too many refused keys this minute."""

    code = "too-many-auth-failures"


class RequestTooLarge(ApiError):
    code = "request-too-large"
    http_status = 413


class InvalidRequest(ApiError):
    code = "invalid-request"
    http_status = 422


class UnsupportedMediaType(ApiError):
    """The request body is neither multipart/form-data nor JSON."""

    code = "unsupported-media-type"
    http_status = 415


class Unavailable(ApiError):
    """A dependency (database, Redis, workers) does not answer; try again later."""

    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --- live sources (`backfire watch`) -------------------------------------------------------------
class SourceError(BackfireError):
    """A platform refused the watcher's request (bad token, unknown instance or query): asking
    again cannot help, so the watch stops with this message."""

    code = "source-refused"


class SourceUnavailable(SourceError):
    """The platform did not answer usefully after every retry (5xx, 429, network): this poll is
    given up and the next one tries again from the same cursor."""

    code = "source-unavailable"


# --- storage -----------------------------------------------------------------------------------
class StorageFull(BackfireError):
    """The media disk (or the upload spool) has no room left: nothing was stored; the same
    request can be sent again once space is freed (507 Insufficient Storage, with Retry-After)."""

    code = "storage-full"
    http_status = 507

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after
