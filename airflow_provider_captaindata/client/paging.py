"""Page URLs from answers: the one origin check and the one page-loop guard.

Every paging path (v3 ``paging.next``, v4 ``X-Pagination-Next`` on a single call and in the live
fan-out, the coming v1 cursor pages, the run listings) goes through these two:

* :func:`same_origin_url`: a URL taken from an answer gets the auth headers, so it is only
  called on the API's own origin, and then *rebuilt* on the connection's base URL from its path
  and query. What a client sends to is then the base URL's origin whatever its parser makes of
  the answer's text (``https://evil.example\\@api...`` is ``evil.example`` to urllib3 and
  ``api...`` to ``urlsplit``: such a URL is refused, never re-read by another parser);
* :class:`PageTrail`: a page read twice means the API's paging loops (``2 -> 3 -> 2``), which
  fails loudly instead of spending credits and duplicating rows forever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from airflow_provider_captaindata.exceptions import CaptainDataError, CaptainDataPagingError

_DEFAULT_PORTS = {"http": 80, "https": 443}
NEXT_PAGE_HEADER = "X-Pagination-Next"
# Where parsers disagree: a backslash ends the authority for urllib3 and browsers but not for
# urlsplit; whitespace and control characters are stripped by some and kept by others.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")
_ASCII_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)$")


def origin_key(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, the port defaulted by scheme; ValueError on a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), parts.port or _DEFAULT_PORTS.get(scheme)


def describe_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for error texts.

    Never the userinfo, path or query: those are where URLs carry tokens."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{shown_port}"


def same_origin_url(url: str, base_url: str) -> str:
    """``url`` (absolute) rebuilt on ``base_url``'s origin, or :class:`CaptainDataError` when it
    is not plainly on that origin: another scheme, host or port, user info, a host that is not
    plain ASCII (IDNA, punycode of another name), or a character parsers read differently."""
    refused = _refusal(url, base_url)
    if refused:
        raise CaptainDataError(
            f"A page URL from the API points to another origin, {refused}; it was not called "
            "because the request would carry the API key there. Check the connection's base URL "
            "and any proxy in front of the API."
        )
    parts = urlsplit(url)
    base = urlsplit(base_url)
    return f"{base.scheme}://{base.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _refusal(url: str, base_url: str) -> str | None:
    """Why ``url`` is not on ``base_url``'s origin (words for the error), None when it is."""
    if _AMBIGUOUS.search(url):
        return "a URL with a backslash, space or control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "an unparsable URL"
    if "@" in parts.netloc:
        return "a URL with user info (an '@' before the host)"
    host = parts.hostname or ""
    if not host:
        return "a URL without a host"
    if not _ASCII_HOST.match(host):
        return "a URL whose host is not plain ASCII"
    try:
        same = origin_key(base_url) == (
            parts.scheme.lower(),
            host,
            port or _DEFAULT_PORTS.get(parts.scheme.lower()),
        )
        foreign = describe_origin(url)
    except ValueError:
        return "an unparsable URL"
    return None if same else foreign


def next_page_url(headers: Mapping[str, str], current_url: str) -> str | None:
    """The ``X-Pagination-Next`` URL of an answer (v4 live, v1), resolved against the page
    read; absent, empty or "null" ends the pages."""
    return resolve_next(current_url, headers.get(NEXT_PAGE_HEADER))


def resolve_next(current_url: str, value: str | None) -> str | None:
    """A next-page link from an answer (a header or v3 ``paging.next``) as an absolute URL,
    resolved against the page read, as a browser would; empty or "null" ends the pages. The
    result still goes through :func:`same_origin_url` before it is called."""
    value = (value or "").strip()
    if not value or value.lower() == "null":
        return None
    try:
        return urljoin(current_url, value)
    except ValueError:  # e.g. "[localhost]": left as it is, for same_origin_url to refuse
        return value


class PageTrail:
    """The pages a paged read went through: a page read already means the API's paging loops,
    which fails loudly (:class:`CaptainDataPagingError`) instead of reading forever.

    Cursor paging (a next URL) calls :meth:`next_url`; numbered listings call :meth:`page` with
    what identifies a page's content (its runs' uids)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.pages = 0
        self.rows = 0
        self._seen: set[str] = set()

    def next_url(self, current: str, next_url: str | None, rows: int) -> str | None:
        """Record the page read at ``current``; return ``next_url`` unless it was read already."""
        self.pages += 1
        self.rows += rows
        self._seen.add(_page_key(current))
        if next_url is not None and _page_key(next_url) in self._seen:
            raise CaptainDataPagingError(
                f"{self.what}: page {self.pages} points to a page already read "
                f"({_page_key(next_url)}); the API's paging loops, so the read stops after "
                f"{self.rows} rows"
            )
        return next_url

    def page(self, key: str, rows: int) -> None:
        """Record a page of a numbered listing; a page whose content was read already fails."""
        self.pages += 1
        self.rows += rows
        if key in self._seen:
            raise CaptainDataPagingError(
                f"{self.what}: page {self.pages} repeats a page already read; the API does not "
                "page as asked, so the read cannot see every item"
            )
        self._seen.add(key)


def _page_key(url: str) -> str:
    """A page URL as its origin, path and query: ``HTTP://Host:443/p`` and ``https://host/p#x``
    name the same page."""
    try:
        parts = urlsplit(url)
        return f"{describe_origin(url)}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    except ValueError:
        return url
