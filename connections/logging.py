"""A logging filter that keeps secrets out of every log line.

Defence in depth: code never logs secrets on purpose, and this filter masks
what might slip through anyway (a bearer header in an exception message, a
token-shaped string in a provider's error body).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization headers and bearer tokens.
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    # key=value or "key": "value" pairs whose key names a secret.
    re.compile(
        r"(?i)([\"']?(?:access_?token|refresh_?token|offline_?token|client_?secret|app_?secret|"
        r"user_?secret|access_?code|password|token|secret|authorization|api_?key)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\"'&\s,}]+"
    ),
    # Fernet tokens (our own ciphertext) and JWT-shaped strings.
    re.compile(r"gAAAAA[A-Za-z0-9\-_=]{20,}"),
    re.compile(r"eyJ[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*"),
)


def redact(text: str) -> str:
    """Mask secret-looking substrings in ``text``."""
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message (with its arguments applied) and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the log line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so handlers use the cached text.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
