"""Logging filters (settings.LOGGING)."""

from __future__ import annotations

import logging


class RefusalWithoutTraceback(logging.Filter):
    """A 403 is a refusal the person is shown, not a fault: Django logs it with the
    ``PermissionDenied`` traceback; keep the one line ("Forbidden (Permission denied): /path")
    and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
