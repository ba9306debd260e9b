"""Callback URLs that authenticate themselves: no shared state between Airflow and the receiver.

A launch gets ``{base_url}/v1/{launch_key}/{expires}/{token}`` where ``token`` is an HMAC-SHA256
of ``{launch_key}.{expires}`` with the connection's callback secret. The receiver recomputes it
and compares in constant time, so any number of receivers (the Airflow API server's workers, a
standalone process) accept exactly the URLs Airflow handed out, until they expire.

The run uid is not part of the token because it does not exist yet when the URL is built: the
launch key (a deterministic id of dag, task, run and map index) is what the token binds, and
the receiver stores pages under that key, so a URL can only ever write into its own launch's
folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_captaindata.client.scrub import URL_TOKEN
from airflow_provider_captaindata.exceptions import CaptainDataConfigError

URL_VERSION = "v1"  # first path segment: lets a future token scheme live beside this one
DEFAULT_TTL_SECONDS = 7 * 86400  # the least a callback URL lives
TTL_MARGIN_SECONDS = 2 * 86400  # beyond the task's wait: Captain Data's own delivery retries
UNBOUNDED_TTL_SECONDS = 90 * 86400  # a task with no time limit (callback_url_ttl goes further)

LAUNCH_KEY_RE = re.compile(r"[0-9a-f]{24}")
EXPIRES_RE = re.compile(r"[0-9]{1,12}")  # unix seconds; bounded so int() stays cheap
TOKEN_RE = re.compile(URL_TOKEN)  # 32 bytes of SHA-256, urlsafe base64 without padding
MIN_SECRET_CHARS = 16
MIN_SECRET_DISTINCT = 8
# Values the docs show as examples: a deployment that copied one has a public secret. Compared
# by their letters and digits only, so that any spelling of one ("<a long random string>") is
# refused too (tests/callbacks/test_docs_placeholders.py reads every one the docs show).
PLACEHOLDER_SECRETS = frozenset(
    {"alongrandomstring", "thecallbacksecret", "changeme", "secret", "yoursecret"}
)


def weak_secret(secret: str | None) -> str | None:
    """Why ``secret`` is too weak to sign callback and webhook URLs, or None when it is not.

    Anyone holding a URL can try secrets offline against its HMAC: a short, repetitive or
    documented value lets them forge URLs for every launch.
    """
    if not secret:
        return "it is empty"
    if re.sub(r"[^a-z0-9]", "", secret.lower()) in PLACEHOLDER_SECRETS:
        return "it is the documentation's placeholder"
    if len(secret) < MIN_SECRET_CHARS:
        return f"it has fewer than {MIN_SECRET_CHARS} characters"
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        return f"it has fewer than {MIN_SECRET_DISTINCT} different characters"
    return None


def require_strong_secret(secret: str | None, name: str = "callback_secret") -> str:
    """``secret``, or ``CaptainDataConfigError`` naming the parameter and why it is refused."""
    reason = weak_secret(secret)
    if reason is not None:
        raise CaptainDataConfigError(
            f"{name} is too weak ({reason}): set the connection's {name} extra to a long random string, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))' (the receiver must use "
            "the same one)."
        )
    return str(secret)


def is_launch_key(value: object) -> bool:
    return isinstance(value, str) and LAUNCH_KEY_RE.fullmatch(value) is not None


def _sign(secret: str, launch_key: str, expires: int) -> str:
    digest = hmac.new(secret.encode(), f"{launch_key}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def lifetime_covering(wait_seconds: float | None) -> float:
    """How long a launch's callback URL must be accepted when its task may wait ``wait_seconds``
    in all (every try, the retry delays, the replays); None: the task has no time limit.

    A retry resumes the run launched earlier, and Captain Data keeps sending and replaying to
    the URL given at launch: the URL must outlive every try, not only the first.
    """
    if wait_seconds is None:
        return float(UNBOUNDED_TTL_SECONDS)
    return max(float(DEFAULT_TTL_SECONDS), wait_seconds + TTL_MARGIN_SECONDS)


def callback_url_for(
    base_url: str,
    secret: str,
    launch_key: str,
    *,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """The callback URL to give Captain Data for one launch.

    :param base_url: where the receiver is reachable from the internet, e.g.
        ``https://airflow.example.com/captaindata`` (plugin in the Airflow 3 API server) or
        ``https://callbacks.example.com`` (standalone receiver).
    :param secret: the connection's ``callback_secret``; the receiver must have the same one.
    :param launch_key: 24 lowercase hex characters identifying the launch.
    :param ttl_seconds: how long the URL is accepted.
    """
    if not is_launch_key(launch_key):
        raise CaptainDataConfigError(f"launch_key must be 24 lowercase hex characters, got {launch_key!r}")
    require_strong_secret(secret)
    if not base_url or "://" not in base_url:
        raise CaptainDataConfigError(f"callback_base_url must be an http(s) URL, got {base_url!r}")
    if not ttl_seconds > 0:
        raise CaptainDataConfigError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    if EXPIRES_RE.fullmatch(str(expires)) is None:  # the receiver would refuse it as malformed
        raise CaptainDataConfigError(f"ttl_seconds is too large, got {ttl_seconds!r}")
    token = _sign(secret, launch_key, expires)
    return f"{base_url.rstrip('/')}/{URL_VERSION}/{launch_key}/{expires}/{token}"


def require_callback_settings(settings: Any) -> tuple[str, str, str]:
    """``(callback_base_url, callback_secret, callback_storage)`` of a connection's settings.

    Call it before launching an async run whose results are wanted: a missing field is a
    ``CaptainDataConfigError`` naming every missing field, raised before anything is spent.
    """
    secret = settings.callback_secret
    values = {
        "callback_base_url": settings.callback_base_url,
        "callback_secret": secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret,
        "callback_storage": settings.callback_storage,
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise CaptainDataConfigError(
            f"Connection {settings.conn_id!r} has no {', '.join(missing)}: async results are POSTed to "
            "the callback receiver, which needs callback_base_url (its public URL), callback_secret "
            "(signs the URL) and callback_storage (where pages are kept). Set them in the connection's "
            "extra, see the Callbacks guide."
        )
    return values["callback_base_url"], values["callback_secret"], values["callback_storage"]


def check(secret: str, launch_key: str, expires: str | int, token: str, now: float | None = None) -> str:
    """``"ok"``, or why the token is refused: ``"malformed"`` (a part has the wrong shape, or
    no secret is configured), ``"invalid"`` (wrong signature) or ``"expired"``.

    Malformed values are refused before any HMAC is computed; the comparison itself is constant
    time (``hmac.compare_digest``) so the answer time says nothing about the expected token.
    """
    if not secret or not is_launch_key(launch_key):
        return "malformed"
    if isinstance(expires, bool) or not isinstance(expires, (str, int)):
        return "malformed"
    expires_text = str(expires)
    if EXPIRES_RE.fullmatch(expires_text) is None:
        return "malformed"
    if not isinstance(token, str) or TOKEN_RE.fullmatch(token) is None:
        return "malformed"
    expected = _sign(secret, launch_key, int(expires_text))
    # Both sides are ASCII (checked above), so comparing bytes never raises.
    if not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii")):
        return "invalid"
    if int(expires_text) <= (time.time() if now is None else now):
        return "expired"
    return "ok"


def check_any(
    secrets: Sequence[str], launch_key: str, expires: str | int, token: str, now: float | None = None
) -> str:
    """:func:`check` against each secret a token may be signed with (the current one, then a
    previous one in its overlap window): ``"ok"`` when one signed it, else the current one's
    verdict (``"expired"`` when a valid signature has expired)."""
    verdicts = [check(secret, launch_key, expires, token, now) for secret in secrets] or ["malformed"]
    if "ok" in verdicts:
        return "ok"
    return "expired" if "expired" in verdicts else verdicts[0]


def verify(secret: str, launch_key: str, expires: str | int, token: str, now: float | None = None) -> bool:
    """True when ``token`` was issued with ``secret`` for this launch key and has not expired."""
    return check(secret, launch_key, expires, token, now) == "ok"
