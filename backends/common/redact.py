"""Secrets never reach a file or a terminal: passwords in connection strings (URI userinfo,
``password=`` keywords, also quoted) are masked wherever text leaves the process (manifest
argv and options, error messages, logs, tracebacks)."""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
_URI_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^\s]*@")
_KEYWORD = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'|"[^"]*"|[^\s&'"]+)""", re.I)


def redact_text(text: str) -> str:
    """``text`` with every connection-string password replaced by ``***``."""
    return _KEYWORD.sub(rf"\1{MASK}", _URI_USERINFO.sub(rf"\1{MASK}@", text))


def redact(value: Any) -> Any:
    """Strings redacted inside any JSON-like structure (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks passwords in a log record's final message (arguments and traceback included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(
                logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
            )
            record.exc_info = None
        return True
