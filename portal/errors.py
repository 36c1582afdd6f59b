"""The one domain exception: a refusal with a stable error code (SPEC section 4).

Every service raises it, the gate records it, and each caller turns it into its own shape:
a form error, ``{"code", "detail"}`` with the status below, a sentence from a command.
"""

from __future__ import annotations

HTTP_STATUS = {
    "permission_denied": 403,
    "validation_error": 400,
    "not_found": 404,
    "storage_unavailable": 503,
}


class DomainError(Exception):
    """A refusal with a stable error code and a sentence a person can act on."""

    def __init__(self, code: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 409)
