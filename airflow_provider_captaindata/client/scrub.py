"""The token of a URL the callback receiver signs, kept out of any text an answer gives.

An answer from the API may echo a callback URL its request did not carry: a replay's error
names the page's callback URL, a run's last error may name where its pages go. Those texts
reach task logs, XCom and trigger events, so every such text loses the token, whatever the
request (the API key and a launch's own callback are scrubbed by the request's secrets).
"""

from __future__ import annotations

import re

# 32 bytes of HMAC-SHA256 in urlsafe base64 without padding (callbacks.tokens signs with it).
URL_TOKEN = r"[A-Za-z0-9_-]{43}"
_URL_TOKEN_SEGMENT = re.compile(rf"(?<=/){URL_TOKEN}(?![A-Za-z0-9_-])")
SCRUBBED = "***"


def scrub_url_tokens(text: str) -> str:
    """``text`` with every path segment shaped like a signed URL's token replaced by ``***``."""
    return _URL_TOKEN_SEGMENT.sub(SCRUBBED, text)
