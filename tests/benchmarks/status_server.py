"""A fake run-status server over TLS that counts the connections it accepts.

Used by the TLS triggerer benchmark (in its own process, ``python status_server.py``) and by
``tests/test_trigger_scale.py`` (in the test's loop, :func:`start`). It is an
``asyncio.Protocol`` answering tiny keep-alive HTTP/1.1 GETs, so it stays cheap next to the
clients it serves; the emulator (FastAPI) would be the bottleneck at thousands of polls a
second. Every run uid is known: a run answers "running" until its ``polls``-th status read,
then its final status, so every side of a benchmark makes the same polls.

* ``GET /v3/jobs/{uid}``: a v3 run (``{"uid", "status"}``);
* ``GET /api/v2/accounts/{id}/runs/{id}/``: a dbt Cloud run (``{"data": {"status"}}``);
* ``GET /_stats``: ``{"connections", "requests", "finished"}``; ``POST /_reset`` zeroes them.

A connection is counted at its first API request (so the harness's own ``/_stats`` calls
are not): asyncio hands a connection over only once its TLS handshake is done, so this is
one per handshake of a client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DBT_RUNNING, DBT_SUCCESS = 3, 10


@dataclass
class Stats:
    polls: int
    connections: int = 0
    requests: int = 0
    finished: int = 0
    reads: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.connections = self.requests = self.finished = 0
        self.reads.clear()

    def as_json(self) -> bytes:
        return json.dumps(
            {"connections": self.connections, "requests": self.requests, "finished": self.finished}
        ).encode()


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _answer(status: int, body: bytes) -> bytes:
    reason = b"OK" if status == 200 else b"Not Found"
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


class _StatusProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = b""
        self.counted = False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            # The clients here send GETs without a body (POST /_reset has none either).
            method, _, rest = head.partition(b" ")
            target = rest.split(b" ", 1)[0].split(b"?", 1)[0].decode()
            self.transport.write(self._route(method, target))

    def _route(self, method: bytes, path: str) -> bytes:
        stats = self.stats
        if path == "/_stats":
            return _answer(200, stats.as_json())
        if path == "/_reset" and method == b"POST":
            stats.reset()
            return _answer(200, b"{}")
        parts = path.strip("/").split("/")
        stats.requests += 1
        if not self.counted:  # counted at its first API request: a /_stats call is not a client's
            self.counted = True
            stats.connections += 1
        if len(parts) == 3 and parts[:2] == ["v3", "jobs"]:
            done = self._read(parts[2])
            return _answer(
                200, b'{"uid":"%s","status":"%s"}' % (parts[2].encode(), b"finished" if done else b"running")
            )
        if len(parts) == 6 and parts[:3] == ["api", "v2", "accounts"] and parts[4] == "runs":
            done = self._read(parts[5])
            return _answer(
                200,
                b'{"data":{"id":%s,"status":%d}}' % (parts[5].encode(), DBT_SUCCESS if done else DBT_RUNNING),
            )
        return _answer(404, b'{"message":"not found"}')

    def _read(self, uid: str) -> bool:
        """Count a status read of ``uid``; True when this read finds the run final."""
        reads = self.stats.reads[uid] = self.stats.reads.get(uid, 0) + 1
        if reads == self.stats.polls:
            self.stats.finished += 1
        return reads >= self.stats.polls


async def start(context: ssl.SSLContext, polls: int, port: int = 0) -> tuple[asyncio.Server, Stats, str]:
    """Serve on 127.0.0.1 in the running loop; returns the server, its counters and base URL."""
    stats = Stats(polls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _StatusProtocol(stats), "127.0.0.1", port, ssl=context, backlog=4096
    )
    bound = server.sockets[0].getsockname()[1]
    return server, stats, f"https://127.0.0.1:{bound}"


async def _main(args: argparse.Namespace) -> None:
    server, _, url = await start(server_context(Path(args.certfile), Path(args.keyfile)), args.polls)
    print(url, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--polls", type=int, default=5, help="status reads until a run is final")
    args = parser.parse_args()
    try:
        import uvloop  # the server must not be the bottleneck: use the faster loop when present

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        run(_main(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
