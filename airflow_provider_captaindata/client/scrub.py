"""The token of a URL the callback receiver signs, kept out of any text an answer gives.

An answer from the API may echo a callback URL its request did not carry: a replay's error
names the page's callback URL, a run's last error may say where its pages go. Those texts
reach task logs, XCom and trigger events, so every such text loses the token, whatever the
request (the API key and a launch's own callback are scrubbed by the request's secrets). The
URL may come encoded (``%2F``, ``&#x2F;``, once or twice): tokens are found in the decoded
text, and since their characters are never encoded, removed from the text as given.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote

# 32 bytes of HMAC-SHA256 in urlsafe base64 without padding (callbacks.tokens signs with it).
URL_TOKEN = r"[A-Za-z0-9_-]{43}"
_URL_TOKEN_SEGMENT = re.compile(rf"(?<=/){URL_TOKEN}(?![A-Za-z0-9_-])")
_DECODINGS = 3  # a URL quoted inside a quoted URL, inside HTML
SCRUBBED = "***"


def scrub_url_tokens(text: str) -> str:
    """``text`` with every path segment shaped like a signed URL's token replaced by ``***``."""
    decoded = text
    for _ in range(_DECODINGS):
        once = html.unescape(unquote(decoded))
        if once == decoded:
            break
        decoded = once
    for token in set(_URL_TOKEN_SEGMENT.findall(decoded)):
        text = text.replace(token, SCRUBBED)
    return text


def scrub(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """``value`` with every secret replaced by ``***``, and every signed URL's token
    (:func:`scrub_url_tokens`), in strings nested in dicts (keys too) and lists."""
    if isinstance(value, str):
        for secret in secrets:
            if secret:  # an empty "secret" would insert *** between every character
                value = value.replace(secret, SCRUBBED)
        return scrub_url_tokens(value)
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value
