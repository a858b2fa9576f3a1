"""What every layer shares: the error type for bad user input and credential redaction for anything shown or stored."""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# user:password@ — with a scheme (rtsp://), a mistyped one (rtsp//) or none (viewer:pw@host); the password runs
# to the last "@" before the host, as FFmpeg parses it
_USER_INFO = re.compile(r"(?P<keep>[^\s:@/?#]*:)[^\s/?#]*@")
# key=value of a secret-named key: URL queries (?token=...), libpq strings (password=...)
_KEY_VALUE = re.compile(r"(?i)(?P<keep>\b[\w.-]*?(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|signature)[\w.-]*=)[^\s&#;,'\"]+")
# an HTTP credential as it appears in a header value: "Bearer abc", "Basic dXNlcjpwdw=="
_AUTH_SCHEME = re.compile(r"(?i)(?P<keep>\b(?:bearer|basic)\s+)[^\s'\",;]+")
# words of a key (split on anything but letters and digits) whose value is a secret; "headers": every header value
_SECRET_WORDS = frozenset({
    "password", "passwd", "pass", "pwd", "passphrase", "secret", "token", "key", "apikey", "authorization", "cookie",
    "credential", "credentials", "signature", "headers",
})  # fmt: skip


class InputError(ValueError):
    """Bad input from the user (file, config value, weights); the message is shown as is, so it never carries a secret."""


def redact_url(text: str) -> str:
    """Credentials in text hidden: ``rtsp://user:pass@host/x`` → ``rtsp://user:***@host/x``, ``?token=***``, ``Bearer ***``.

    Works inside longer text (error messages, log lines). The user name stays (an
    operator needs to see which account is used); text without credentials is returned unchanged.
    """
    text = _USER_INFO.sub(rf"\g<keep>{MASK}@", text)
    text = _KEY_VALUE.sub(rf"\g<keep>{MASK}", text)
    return _AUTH_SCHEME.sub(rf"\g<keep>{MASK}", text)


def secret_key(name: str) -> bool:
    """Whether a key names a secret (``password``, ``api_key``, ``X-Auth-Token``, ``headers``...)."""
    return not _SECRET_WORDS.isdisjoint(re.split(r"[^a-z0-9]+", str(name).lower()))


def redact(value: Any, *, hide: bool = False) -> Any:
    """``value`` (text, or JSON-like dicts and lists, e.g. a config dump) safe to store, log or show.

    Values under a secret-named key are replaced by ``***`` (``None`` stays: "not set"
    is no secret); every other string goes through :func:`redact_url`.
    """
    if isinstance(value, dict):
        return {k: redact(v, hide=hide or secret_key(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, hide=hide) for v in value]
    if hide and value is not None:
        return MASK
    return redact_url(value) if isinstance(value, str) else value


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


def log_redacted(fmt: str, level: int = logging.INFO) -> None:
    """Log to stderr with credentials hidden in every line, tracebacks included, whatever a library put in a message."""
    handler = logging.StreamHandler()
    handler.setFormatter(_RedactingFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
