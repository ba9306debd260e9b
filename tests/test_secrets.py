"""The API key and the callback secret stay in this process and out of every text.

What these tests guard (documented in docs/connection.md, section "Secrets"):

* a page URL taken from an answer (v3 ``paging.next``, v4 ``X-Pagination-Next``) is only
  called on the API's own origin; elsewhere it is refused before any request;
* redirects are not followed (the sync client would resend ``X-API-Key`` to the new host);
  the error names only the target's origin;
* an error body that echoes the request has the key replaced by ``***`` everywhere it lands
  in the exception;
* an API key that is not printable ASCII is refused when the connection is read, without
  showing it;
* the callback receiver's settings do not show the secret in their repr.

The "API" and "another origin" are two small stdlib HTTP servers on loopback: they stand for a
hostile proxy or a misconfigured base URL, which the emulator does not model.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_captaindata.client.paging import describe_origin, origin_key
from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataError,
)

API_KEY = "test-key-not-real-0001"
CALLBACK_SECRET = "test-callback-secret-not-real"
CONN_ID = "cd_secrets"
ONE_TRY = RetryPolicy(attempts=1, backoff_initial=0.01, backoff_max=0.01, read_timeout=5.0)
SEARCH_INPUT = {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=x"}

Answer = tuple[int, dict[str, str], bytes]


class _Server:
    """A loopback HTTP server whose answers come from ``handler(method, path, headers)``."""

    def __init__(self, handler: Callable[[str, str, dict[str, str]], Answer]):
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                headers = dict(self.headers)
                outer.seen.append((self.command, self.path, headers))
                status, extra, body = handler(self.command, self.path, headers)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def keys_seen(self) -> list[str]:
        return [v for _, _, h in self.seen for v in h.values() if API_KEY in v]


def _json(status: int, data: Any, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(data).encode()


@pytest.fixture
def other_origin() -> Iterator[_Server]:
    server = _Server(lambda method, path, headers: _json(200, {"results": [], "paging": {}}))
    yield server
    server.close()


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., _Server]]:
    """Start the "API" with a handler and point the connection ``CONN_ID`` at it."""
    servers: list[_Server] = []

    def start(handler: Callable[[str, str, dict[str, str]], Answer], api_key: str = API_KEY) -> _Server:
        server = _Server(handler)
        servers.append(server)
        _use_connection(monkeypatch, server.url, api_key)
        return server

    yield start
    for server in servers:
        server.close()


def _use_connection(monkeypatch: pytest.MonkeyPatch, api_url: str, api_key: str = API_KEY) -> None:
    conn = {
        "conn_type": "captaindata",
        "password": api_key,
        "extra": {
            "v3_base_url": f"{api_url}/v3",
            "v4_base_url": f"{api_url}/v4",
            "project_uid": "11111111-2222-3333-4444-555555555555",
            "rate_limit_per_second": "1000",
        },
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def _sync_hook() -> Any:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

    return CaptainDataHook(CONN_ID, retry_policy=ONE_TRY)


def _async_hook() -> Any:
    from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

    return CaptainDataAsyncHook(CONN_ID, retry_policy=ONE_TRY)


def _assert_refused_origin(exc: BaseException, origin: str) -> None:
    text = str(exc)
    assert type(exc) is CaptainDataError
    assert f"another origin, {origin};" in text
    assert "would carry the API key" in text
    assert "/p2" not in text and "token" not in text and API_KEY not in text


# -- the callback receiver's settings ---------------------------------------------------------


def test_receiver_settings_repr_hides_the_callback_secret(tmp_path: Any) -> None:
    from airflow_provider_captaindata.callbacks.app import CallbackReceiver, ReceiverSettings
    from airflow_provider_captaindata.callbacks.storage import CallbackStore

    settings = ReceiverSettings(secret=CALLBACK_SECRET, store=CallbackStore(tmp_path.as_uri()))
    assert CALLBACK_SECRET not in repr(settings)
    assert CALLBACK_SECRET not in str(settings)
    assert settings.secret == CALLBACK_SECRET
    receiver = CallbackReceiver(secret=CALLBACK_SECRET, storage=None, conn_id="x", max_body_bytes=10)
    assert CALLBACK_SECRET not in repr(receiver)


# -- redirects are not followed ---------------------------------------------------------------


def test_sync_redirect_is_an_error_naming_only_the_target_origin(
    serve: Callable[..., _Server], other_origin: _Server
) -> None:
    target = f"http://user:pw@127.0.0.1:{other_origin.port}/collect?token=abc"
    api = serve(lambda method, path, headers: (302, {"Location": target}, b""))
    with pytest.raises(CaptainDataAPIError) as info:
        _sync_hook().get_workspaces()
    assert len(api.seen) == 1
    assert other_origin.seen == [], "the redirect was followed"
    exc = info.value
    assert exc.status_code == 302 and not exc.is_retryable
    assert f"redirected to {other_origin.url} (redirects are not followed" in str(exc)
    for hidden in ("collect", "token", "user", "pw@"):
        assert hidden not in str(exc)


def test_async_redirect_is_an_error_too(serve: Callable[..., _Server], other_origin: _Server) -> None:
    # httpx does not follow redirects; before, the 3xx was decoded as a success with no data.
    api = serve(lambda method, path, headers: (307, {"Location": f"{other_origin.url}/runs/x"}, b""))
    with pytest.raises(CaptainDataAPIError) as info:
        asyncio.run(_async_hook().get_run("v4", "run-uid"))
    assert len(api.seen) == 1 and other_origin.seen == []
    assert info.value.status_code == 307
    assert f"redirected to {other_origin.url} (" in str(info.value)
    assert "/runs/x" not in str(info.value)


def test_relative_redirect_names_the_api_origin(serve: Callable[..., _Server]) -> None:
    api = serve(lambda method, path, headers: (301, {"Location": "/v4/moved-here?x=1"}, b""))
    with pytest.raises(CaptainDataAPIError, match=rf"redirected to {api.url} \(") as info:
        _sync_hook().get_workspaces()
    assert len(api.seen) == 1
    assert "moved-here" not in str(info.value)


# -- page URLs from an answer are only called on the API's origin -----------------------------


def test_v3_results_next_page_on_another_origin_is_refused(
    serve: Callable[..., _Server], other_origin: _Server
) -> None:
    serve(
        lambda method, path, headers: _json(
            200,
            {
                "results": [{"a": 1}],
                "paging": {"have_next_page": True, "next": f"{other_origin.url}/p2?token=t"},
            },
        )
    )
    pages = _sync_hook().iter_workflow_results("job-uid")
    assert next(pages) == [{"a": 1}]
    with pytest.raises(CaptainDataError) as info:
        next(pages)
    _assert_refused_origin(info.value, other_origin.url)
    assert other_origin.seen == []


def test_v4_live_next_page_on_another_origin_is_refused(
    serve: Callable[..., _Server], other_origin: _Server
) -> None:
    api = serve(
        lambda method, path, headers: _json(
            200, [{"a": 1}], **{"X-Pagination-Next": f"{other_origin.url}/p2?token=t"}
        )
    )
    with pytest.raises(CaptainDataError) as info:
        list(_sync_hook().iter_live_pages("linkedin-search-people", SEARCH_INPUT))
    _assert_refused_origin(info.value, other_origin.url)
    assert len(api.seen) == 1 and other_origin.seen == []


def test_async_live_page_url_on_another_origin_is_refused(
    serve: Callable[..., _Server], other_origin: _Server
) -> None:
    api = serve(lambda method, path, headers: _json(200, []))
    with pytest.raises(CaptainDataError) as info:
        asyncio.run(
            _async_hook().run_action_live(
                "linkedin-search-people", {"inputs": [SEARCH_INPUT]}, url=f"{other_origin.url}/p2?token=t"
            )
        )
    _assert_refused_origin(info.value, other_origin.url)
    assert api.seen == [] and other_origin.seen == []


def test_page_url_with_the_api_host_but_another_scheme_is_refused(serve: Callable[..., _Server]) -> None:
    # Same host and port, https instead of http: still another origin. (The other way round,
    # an http page under an https API, would send the key in clear.)
    api = serve(lambda method, path, headers: _json(200, []))
    with pytest.raises(CaptainDataError) as info:
        asyncio.run(
            _async_hook().run_action_live(
                "linkedin-search-people",
                {"inputs": [SEARCH_INPUT]},
                url=f"https://127.0.0.1:{api.port}/v4/p2",
            )
        )
    _assert_refused_origin(info.value, f"https://127.0.0.1:{api.port}")
    assert api.seen == []


def test_next_page_on_the_api_origin_is_followed(serve: Callable[..., _Server]) -> None:
    def pages(method: str, path: str, headers: dict[str, str]) -> Answer:
        if path.endswith("/jobs/job-uid"):  # the run, read for its total_row_count
            return _json(200, {"uid": "job-uid", "status": "finished", "total_row_count": 2})
        if "page=2" in path:
            return _json(200, {"results": [{"a": 2}], "paging": {"have_next_page": False}})
        next_url = f"{api.url}/v3/jobs/job-uid/results?page=2"
        return _json(200, {"results": [{"a": 1}], "paging": {"have_next_page": True, "next": next_url}})

    api = serve(pages)
    assert list(_sync_hook().iter_workflow_results("job-uid")) == [[{"a": 1}], [{"a": 2}]]
    assert len(api.keys_seen()) == 3


@pytest.mark.parametrize(
    ("url", "base", "same"),
    [
        ("https://API.example.com:443/v4/p?x=1", "https://api.example.com/v4", True),
        ("http://api.example.com:80/v3/p", "http://api.example.com/v3", True),
        ("http://api.example.com/v4/p", "https://api.example.com/v4", False),
        ("https://api.example.com:8443/v4/p", "https://api.example.com/v4", False),
        ("https://api.example.com.evil.test/v4", "https://api.example.com/v4", False),
    ],
)
def test_origin_comparison(url: str, base: str, same: bool) -> None:
    assert (origin_key(url) == origin_key(base)) is same


def test_described_origin_never_shows_userinfo_path_or_query() -> None:
    assert describe_origin("https://u:p@Other.example:443/a/b?token=t#f") == "https://other.example"
    assert describe_origin("http://other.example:8080/a") == "http://other.example:8080"
    assert describe_origin("http://[::1]:9/a") == "http://[::1]:9"


# -- error bodies that echo the key -----------------------------------------------------------


def _echo_headers(method: str, path: str, headers: dict[str, str]) -> Answer:
    # What some gateways, WAF block pages and debug proxies do: echo the request back.
    echoed = "; ".join(f"{k}: {v}" for k, v in headers.items())
    return 400, {"Content-Type": "text/plain"}, f"Bad request. Request headers were: {echoed}".encode()


def _echo_headers_json(method: str, path: str, headers: dict[str, str]) -> Answer:
    key = {k.lower(): v for k, v in headers.items()}["x-api-key"]
    return _json(
        401,
        {
            "error_label": f"UNAUTHORIZED {key}",
            "error_scope": f"header {key}",
            "error_ref": f"ref-{key}",
            "message": f"API key {key} is not valid",
            "params": {"sent": [key, {"again": key}], "count": 1},
        },
    )


def _assert_scrubbed(exc: CaptainDataAPIError) -> None:
    fields = [str(exc), repr(exc), exc.message, exc.error_label, exc.error_scope, exc.error_ref]
    assert all(API_KEY not in (text or "") for text in fields)
    assert API_KEY not in json.dumps(exc.params)
    assert "***" in exc.message


def _assert_json_fields_scrubbed(exc: CaptainDataAPIError) -> None:
    assert exc.message == "API key *** is not valid"
    assert (exc.error_label, exc.error_scope, exc.error_ref) == ("UNAUTHORIZED ***", "header ***", "ref-***")
    assert exc.params == {"sent": ["***", {"again": "***"}], "count": 1}


@pytest.mark.parametrize("handler", [_echo_headers, _echo_headers_json], ids=["text", "json"])
def test_sync_error_text_never_holds_the_api_key(serve: Callable[..., _Server], handler: Any) -> None:
    api = serve(handler)
    with pytest.raises(CaptainDataAPIError) as info:
        _sync_hook().get_workspaces()
    assert api.keys_seen(), "the key was not sent, so the test proves nothing"
    _assert_scrubbed(info.value)
    if handler is _echo_headers_json:
        _assert_json_fields_scrubbed(info.value)


@pytest.mark.parametrize("handler", [_echo_headers, _echo_headers_json], ids=["text", "json"])
def test_async_error_text_never_holds_the_api_key(serve: Callable[..., _Server], handler: Any) -> None:
    api = serve(handler)
    with pytest.raises(CaptainDataAPIError) as info:
        asyncio.run(_async_hook().get_run("v4", "run-uid"))
    assert api.keys_seen(), "the key was not sent, so the test proves nothing"
    _assert_scrubbed(info.value)
    if handler is _echo_headers_json:
        _assert_json_fields_scrubbed(info.value)


def test_v3_error_text_never_holds_the_authorization_value(serve: Callable[..., _Server]) -> None:
    api = serve(_echo_headers)
    with pytest.raises(CaptainDataAPIError) as info:
        _sync_hook().get_workspace()
    assert api.keys_seen() == [f"x-api-key {API_KEY}"]
    assert "x-api-key ***" in info.value.message
    assert API_KEY not in str(info.value)


# -- an API key that is not printable ASCII ---------------------------------------------------


@pytest.mark.parametrize(
    "api_key",
    ["test-key-not-real\u20190001", "test-key not-real-0001", "test-key-not-r\u00e9al-0001"],
    ids=["curly-quote", "inner-space", "accent"],
)
def test_key_outside_printable_ascii_is_refused_before_any_call(
    serve: Callable[..., _Server], api_key: str
) -> None:
    api = serve(lambda method, path, headers: _json(200, []), api_key=api_key)
    with pytest.raises(CaptainDataConfigError) as info:
        _sync_hook().get_workspaces()
    message = str(info.value)
    assert f"Connection {CONN_ID!r}" in message
    assert "password field (labelled 'API key')" in message
    assert "outside printable ASCII" in message
    assert api_key not in message and "not-r" not in message and "0001" not in message
    assert "\u2019" not in message and "\u00e9" not in message
    assert api.seen == []


def test_surrounding_spaces_of_the_key_are_still_stripped(serve: Callable[..., _Server]) -> None:
    api = serve(lambda method, path, headers: _json(200, []), api_key=f"  {API_KEY}\n")
    _sync_hook().get_workspaces()
    assert api.keys_seen() == [API_KEY]


def test_a_run_error_naming_a_signed_callback_url_loses_its_token() -> None:
    # What a final run's error reads as (trigger events, task errors): a run of another task's
    # launch may name where its pages go, token included.
    from airflow_provider_captaindata.callbacks.tokens import callback_url_for
    from airflow_provider_captaindata.client.versions import V3, V4

    url = callback_url_for("https://airflow.example/captaindata", "s3cret-0123456789abcdef", "ab" * 12)
    token = url.rsplit("/", 1)[1]
    v4 = V4.snapshot(
        {"uid": "r", "status": "FAILED", "last_error": {"label": "X", "message": f"to {url}: 502"}}
    )
    v3 = V3.snapshot({"uid": "r", "status": "failed", "error_message": f"webhook {url}/ refused"})
    for snapshot in (v4, v3):
        assert snapshot.message and token not in snapshot.message and "/***" in snapshot.message
