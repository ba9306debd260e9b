"""The stack's load balancer: an HTTP proxy that sends each request to the next API server.

``python scripts/stack_proxy.py --port P --backend http://127.0.0.1:A --backend ...``, started
by ``scripts/stack.py``; one JSON line per request on stdout (the stack's ``proxy.log``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_services import HOST

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",  # asked for plain bodies, passed on as they are
}


def serve_proxy(port: int, backends: list[str]) -> None:
    """An HTTP load balancer: each request to the next backend in turn (a connection refused by
    one goes to the next: nothing was sent). One JSON line per request on stdout."""
    import itertools

    import httpx
    import uvicorn

    turn = itertools.count()
    client = httpx.AsyncClient(timeout=120.0, follow_redirects=False, trust_env=False)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in HOP_HEADERS]
        target = scope["raw_path"].decode("latin-1") or scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        first = next(turn)
        answer = None
        for attempt in range(len(backends)):
            index = (first + attempt) % len(backends)
            try:
                answer = await client.request(
                    scope["method"], backends[index] + target, headers=headers, content=body
                )
                break
            except httpx.ConnectError:
                continue
            except httpx.HTTPError:
                break
        status = answer.status_code if answer is not None else 502
        content = answer.content if answer is not None else b"no API server answered"
        out = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in (answer.headers.items() if answer else [])
        ]
        out = [(k, v) for k, v in out if k.decode().lower() not in HOP_HEADERS | {"content-encoding"}]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": content})
        record = {
            "t": round(time.time(), 3),
            "backend": index,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
        }
        print(json.dumps(record), flush=True)

    config = uvicorn.Config(app, host=HOST, port=port, lifespan="off", access_log=False, log_level="warning")
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True)
    args = parser.parse_args(argv)
    serve_proxy(args.port, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
