"""Log output for the command line: plain lines for people, JSON lines for log collectors.

Every record carries the pid, so the lines of several worker processes can be told apart.
A JSON line has ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``pid``, ``message`` and,
for an exception, ``exception`` (the formatted traceback).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

__all__ = ["FORMATS", "JSONFormatter", "setup_logging"]

FORMATS = ("plain", "json")
"""The accepted ``--log-format`` values."""

_PLAIN = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object."""
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, form: str = "plain") -> None:
    """Send muxserver's logs (and everyone's) to stderr at ``level`` in ``form``.

    Raises:
        ValueError: for a form not in :data:`FORMATS`.
    """
    if form not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {form!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if form == "json" else logging.Formatter(_PLAIN))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
