"""A hostile corpus of next-page URLs: only same-origin ones are followed, and the API key never
reaches another server, on every paging path (v3 ``paging.next``, v4 ``X-Pagination-Next`` on
the sync client, and on the async client as the live fan-out calls it).

Two loopback servers: the "API" at ``http://localhost:A`` (the connection's base URL) and an
"attacker" at port E that records every request it gets. A URL that urllib3, aiohttp and
``urlsplit`` read differently (``http://127.0.0.1:E\\@localhost:A/``: urlsplit's host is the
API, urllib3 connects to E) was the leak: the check now refuses what is ambiguous and sends
what it accepts rebuilt on the base URL, so no parser of a sender ever reads the answer's text.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_captaindata.client.paging import PageTrail, next_page_url
from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.client.v1 import AsyncV1Client, CursorPager, V1Client
from airflow_provider_captaindata.exceptions import CaptainDataError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

API_KEY = "test-key-not-real-0003"
CONN_ID = "cd_page_origin"
ONE_TRY = RetryPolicy(attempts=1, read_timeout=5.0, connect_timeout=2.0)
SEARCH = "linkedin-search-people"
SEARCH_INPUT = {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=x"}
V3_FIRST = "/v3/jobs/job-uid/results"
V4_FIRST = f"/v4/actions/{SEARCH}/run/live"

FOLLOWED = [
    "http://localhost:{A}/v4/p2",
    "http://LOCALHOST:{A}/v4/p2",
    "HTTP://LocalHost:{A}/v4/p2",
    "http://localhost:{A}/v4/p2?cursor=abc&n=2",
    "http://localhost:0{A}/v4/p2",  # a leading zero: the same port
    "/v4/p2",
    "p2",
    "?page=2",
    "./p2?x=1",
    "../p2",
    "http://localhost:{A}/v4/%2F%2F127.0.0.1:{E}/p2",
    "http://localhost:{A}/v4/@127.0.0.1:{E}/p2",
    "http://localhost:{A}//127.0.0.1:{E}/p2",
    "http://localhost:{A}/v4/p2#127.0.0.1:{E}",
    "http://localhost:{A}/v4/p2?next=http://127.0.0.1:{E}/",
    "http://localhost:{A}/v4/p2?%40127.0.0.1:{E}",
]
REFUSED = [
    # another port, host or scheme
    "http://127.0.0.1:{E}/v4/p2",
    "http://localhost:{E}/v4/p2",
    "http://127.0.0.1:{A}/v4/p2",  # the same server under another name: another origin
    "https://localhost:{A}/v4/p2",
    "ftp://localhost:{A}/v4/p2",
    "ws://localhost:{A}/v4/p2",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//127.0.0.1:{E}/v4/p2",
    "http://localhost.:{A}/v4/p2",
    "http://localhost:{A}0/v4/p2",
    "http://localhost:{A}:{E}/v4/p2",
    "http://localhost:-{A}/v4/p2",
    # user info, and the backslash and percent tricks around it
    "http://127.0.0.1:{E}\\@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}\\\\@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}%5C@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}%2F@localhost:{A}/v4/p2",
    "http://localhost:{A}@127.0.0.1:{E}/v4/p2",
    "http://localhost:{A}%40127.0.0.1:{E}/v4/p2",
    "http://user:pass@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}/\\@localhost:{A}/v4/p2",
    "\\\\127.0.0.1:{E}\\v4\\p2",
    "/\\127.0.0.1:{E}/v4/p2",
    "http://127.0.0.1:{E}#@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}?@localhost:{A}/v4/p2",
    "http://localhost%2F127.0.0.1:{E}/v4/p2",
    # control characters and whitespace
    "http://127.0.0.1:{E}\t@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E} @localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}\x00@localhost:{A}/v4/p2",
    "http://127.0.0.1:{E}\r\n@localhost:{A}/v4/p2",
    "http://localhost:{A}\n.127.0.0.1:{E}/v4/p2",
    # IDNA and punycode: never the same as the ASCII host
    "http://l\u043ecalhost:{A}/v4/p2",  # a Cyrillic o
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{A}/v4/p2",  # fullwidth "localhost"
    "http://localhost\u3002:{A}/v4/p2",  # ideographic full stop
    "http://xn--lcalhost-9of:{A}/v4/p2",
    "http://127.0.0.1:{E}\u2044@localhost:{A}/v4/p2",
    # IPv6 literals
    "http://[::1]:{E}/v4/p2",
    "http://[::1]:{A}/v4/p2",
    "http://[::ffff:127.0.0.1]:{A}/v4/p2",
    "http://[::1]:{E}@localhost:{A}/v4/p2",
    "http://[localhost]:{A}/v4/p2",
]
CORPUS = [(url, True) for url in FOLLOWED] + [(url, False) for url in REFUSED]


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40 and len(set(CORPUS)) == len(CORPUS)


class _Recorder:
    """A loopback server recording (method, path, key header) and answering ``answer(path)``."""

    def __init__(self, answer: Any, host: str = "127.0.0.1") -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("X-API-Key") or self.headers.get("Authorization")
                outer.seen.append((self.command, self.path, key))
                status, headers, body = answer(self.command, self.path)
                raw = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    # Raw bytes: a hostile header is whatever the server sends.
                    self._headers_buffer.append(f"{name}: ".encode() + value.encode("utf-8") + b"\r\n")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Stage:
    """The API, the attacker (IPv4 and, where the machine has it, IPv6 loopback on the same
    port number is not guaranteed, so ``[::1]`` entries point at a port nothing answers on or
    the attacker's) and the hostile value the API's first page names."""

    def __init__(self) -> None:
        self.next_value = ""
        self.evil = _Recorder(lambda method, path: (200, {}, {"results": [], "paging": {}}))
        self.api = _Recorder(self._answer)

    def _answer(self, method: str, path: str) -> tuple[int, dict[str, str], Any]:
        if path == V3_FIRST:
            return (
                200,
                {},
                {"results": [{"a": 1}], "paging": {"have_next_page": True, "next": self.next_value}},
            )
        if path == V4_FIRST:
            return 200, {"X-Pagination-Next": self.next_value}, [{"a": 1}]
        if path == "/v3/jobs/job-uid":
            return 200, {}, {"uid": "job-uid", "status": "finished", "total_row_count": 2}
        if method == "GET":
            return 200, {}, {"results": [{"a": 2}], "paging": {"have_next_page": False}}
        return 200, {}, [{"a": 2}]

    def hostile(self, template: str) -> str:
        return template.replace("{A}", str(self.api.port)).replace("{E}", str(self.evil.port))

    def pages_after_first(self) -> list[str]:
        return [path for _, path, _ in self.api.seen if path not in (V3_FIRST, V4_FIRST, "/v3/jobs/job-uid")]


@pytest.fixture(scope="module")
def stage() -> Iterator[_Stage]:
    stage = _Stage()
    yield stage
    stage.api.close()
    stage.evil.close()


@pytest.fixture
def conn(stage: _Stage, monkeypatch: pytest.MonkeyPatch) -> _Stage:
    base = f"http://localhost:{stage.api.port}"
    extra = {"v3_base_url": f"{base}/v3", "v4_base_url": f"{base}/v4", "project_uid": "p-1"}
    extra["rate_limit_per_second"] = "1000"
    conn = {"conn_type": "captaindata", "password": API_KEY, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    stage.api.seen.clear()
    stage.evil.seen.clear()
    return stage


def _check(stage: _Stage, followed: bool, read: Any) -> None:
    if followed:
        assert read() == [[{"a": 1}], [{"a": 2}]]
        assert len(stage.pages_after_first()) == 1
    else:
        with pytest.raises(CaptainDataError, match="another origin"):
            read()
        assert stage.pages_after_first() == []
    assert stage.evil.seen == [], "a request left for another server"
    assert all(API_KEY in (key or "") for _, _, key in stage.api.seen)


@pytest.mark.parametrize(("template", "followed"), CORPUS)
def test_v3_paging_next(conn: _Stage, template: str, followed: bool) -> None:
    conn.next_value = conn.hostile(template)
    hook = CaptainDataHook(CONN_ID, retry_policy=ONE_TRY)
    _check(conn, followed, lambda: list(hook.iter_workflow_results("job-uid")))


def _header_safe(value: str) -> bool:
    # A header cannot carry a line break, and latin-1 is what clients decode header bytes as.
    return "\r" not in value and "\n" not in value and "\x00" not in value


HEADER_CORPUS = [(t, f) for t, f in CORPUS if _header_safe(t) and t.strip() == t]


@pytest.mark.parametrize(("template", "followed"), HEADER_CORPUS)
def test_v4_x_pagination_next_sync(conn: _Stage, template: str, followed: bool) -> None:
    conn.next_value = conn.hostile(template)
    hook = CaptainDataHook(CONN_ID, retry_policy=ONE_TRY)
    _check(conn, followed, lambda: list(hook.iter_live_pages(SEARCH, SEARCH_INPUT)))


@pytest.mark.parametrize(("template", "followed"), HEADER_CORPUS)
def test_v4_x_pagination_next_async_as_the_fan_out_reads_it(
    conn: _Stage, template: str, followed: bool
) -> None:
    conn.next_value = conn.hostile(template)

    async def pages() -> list[Any]:
        # The live fan-out's page loop (operators/fanout.py LiveFanOut.call_one), on one input.
        hook = CaptainDataAsyncHook(CONN_ID, retry_policy=ONE_TRY)
        body = {"input": SEARCH_INPUT}
        live_url = f"http://localhost:{conn.api.port}{V4_FIRST}"
        trail, url, found = PageTrail("test"), None, []
        try:
            while True:
                answer = await hook.run_action_live(SEARCH, body, url=url)
                found.append(answer.data)
                current = url or live_url
                url = trail.next_url(current, next_page_url(answer.headers, current), len(answer.data))
                if not url:
                    return found
        finally:
            await hook.aclose()

    _check(conn, followed, lambda: asyncio.run(pages()))


def _v1_clients(base_url: str) -> list[Any]:
    return [
        V1Client(API_KEY, base_url=base_url, rate_limit_per_second=1000, policy=ONE_TRY),
        AsyncV1Client(API_KEY, base_url=base_url, rate_limit_per_second=1000, policy=ONE_TRY),
    ]


# A saved cursor is absolute (resolved before it was saved); the relative ones stay refused.
SAVED_CORPUS = [(t, f and "://" in t) for t, f in CORPUS]


@pytest.mark.parametrize(("template", "followed"), SAVED_CORPUS)
def test_v1_cursor_saved_by_an_earlier_try(conn: _Stage, template: str, followed: bool) -> None:
    # A retry goes on from the next URL its records saved (operators/v1_search.py): the key
    # goes with it, so it is checked as a fresh link is (found by a review: it was not).
    for client in _v1_clients(f"http://localhost:{conn.api.port}/v1"):
        conn.api.seen.clear()
        pager = client.pager("search_people", 10, query="(keywords:x)")
        pager.resume(1, conn.hostile(template), True)

        def read(client: Any = client, pager: CursorPager = pager) -> None:
            if isinstance(client, AsyncV1Client):

                async def pages() -> None:
                    async for _ in client.read(pager):
                        pass

                asyncio.run(pages())
            else:
                list(client.read(pager))

        if followed:
            with pytest.raises(CaptainDataError, match="not a list"):  # the stage answers v3 pages
                read()
            assert len(conn.api.seen) == 1
        else:
            with pytest.raises(CaptainDataError, match="another origin"):
                read()
            assert conn.api.seen == []
        assert conn.evil.seen == [], "a request left for another server"
        assert all(key == API_KEY for _, _, key in conn.api.seen)


# -- one page-loop guard: the live fan-out too --------------------------------------------------


def test_live_fan_out_refuses_a_cycling_next_page(captaindata_emulator: Any, tmp_path: Any) -> None:
    """The fan-out followed ``2 -> 3 -> 2`` forever (only the single-input path had a guard)."""
    from airflow_provider_captaindata.exceptions import CaptainDataPagingError
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from tests.test_launch_guarantees import TaskInstance, new_context, with_hook

    live = f"{captaindata_emulator.info()['v4_url']}/actions/{SEARCH}/run/live"
    for page in (2, 3, 2, 3, 2, 3):  # page 1 -> 2 -> 3 -> 2 ...
        captaindata_emulator.add_fault(
            "POST", V4_FIRST, body=[{"n": page}], headers={"X-Pagination-Next": f"{live}?page={page}"}
        )
    op = CaptainDataRunActionOperator(
        task_id=TaskInstance.task_id,
        action=SEARCH,
        inputs=[SEARCH_INPUT],
        output_path=f"file://{tmp_path}/rows.jsonl",
    )
    with_hook(op)
    with pytest.raises(CaptainDataPagingError, match=r"points to a page already read \(.*page=2\)"):
        op.execute(new_context(None))
    assert len(captaindata_emulator.requests(method="POST", path=V4_FIRST)) == 3
