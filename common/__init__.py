"""What every layer shares: the error type for bad user input and credential redaction for anything shown."""

from __future__ import annotations

import re

# scheme://user:password@ — the password runs to the last "@" before the host, as FFmpeg parses it
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#\s]*:)[^/?#\s]*@")


class InputError(ValueError):
    """Bad input from the user (file, config value, weights); the message is shown as is, so it never carries a secret."""


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` → ``rtsp://user:***@host/x``; also inside longer text (error messages).

    The user name stays (an operator needs to see which account is used); anything
    without ``scheme://user:password@`` is returned unchanged.
    """
    return _CREDENTIALS.sub(r"\g<head>***@", url)
