"""7. The callback receiver in a real Airflow API server, storing pages to S3 (issue 22 #4).

1,000 callback pages of 1,000 rows each are POSTed, one at a time as a sender would, to the
receiver mounted by the provider's plugin in ``airflow api-server``, which stores them in
SeaweedFS S3. Measured: pages/s, and the API server's peak RSS growth (its process tree,
sampled every 50 ms) over its RSS after a first warm-up page, after 10, 100, 300 pages and
after all 1,000, then for one ~9 MiB page (the largest the receiver takes by default). Target: peak
growth at most 3x the largest body, and flat in the number of pages (the growth after 1,000
pages at most 1.25x the growth after 100, or one body more).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from tests.benchmarks.harness import Recorder, Row
from tests.callbacks.test_plugin import BIN, SETUP, free_port

PAGES = int(os.environ.get("BENCH_RECEIVER_PAGES", "1000"))
# The workload is 1,000 rows a page; other sizes only to see what the growth depends on.
ROWS = int(os.environ.get("BENCH_RECEIVER_ROWS", "1000"))
# The workload posts one page at a time; more senders at once only to see what a callback in
# flight costs (each sender its own connection, the pages posted in rounds of SENDERS).
SENDERS = int(os.environ.get("BENCH_RECEIVER_SENDERS", "1"))
BIG_ROWS = 80_000  # ~9 MiB: the largest page under the receiver's default 10 MiB cap
CHECKPOINTS = (10, 100, 300, 1000, 3000, 10_000)
SECRET = "bench-callback-secret-0123456789abcdef"
CONN_ID = "captaindata_bench_receiver"


def page(run_uid: str, i: int, rows_per_page: int = ROWS) -> bytes:
    rows = [
        {
            "full_name": f"Person {i}-{j}",
            "linkedin_profile_url": f"https://www.linkedin.com/in/p-{i}-{j}",
            "index": j,
        }
        for j in range(rows_per_page)
    ]
    body = {
        "run": {"run_uid": run_uid, "batch_uid": str(uuid.uuid4()), "status": "RUNNING"},
        "input": {"linkedin_profile_url": f"https://www.linkedin.com/in/input-{i}"},
        "custom_data": {"i": i},
        "error": None,
        "results_count": rows_per_page,
        "results": rows,
    }
    return json.dumps(body).encode()


def tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and its descendants (the API server runs its app in a worker)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/task/{current}/children") as children:
                pids.extend(int(c) for c in children.read().split())
        except OSError:
            continue
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.05)

    def take_peak(self) -> int:
        peak, self.peak = self.peak, tree_rss(self.pid)
        return max(peak, self.peak)


def test_receiver_pages_to_s3_through_the_api_server(
    recorder: Recorder, s3_server: Any, tmp_path: Path
) -> None:
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    storage = s3_server.uri(f"bench-callbacks-{uuid.uuid4().hex[:8]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        s3_server.environment(),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CAPTAINDATA__CALLBACK_CONN_ID=CONN_ID,
    )
    subprocess.run(
        [sys.executable, "-c", SETUP, CONN_ID, SECRET, storage],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    port = free_port()
    log_path = tmp_path / "api-server.log"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [
                str(BIN / "airflow"),
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "-w",
                "1",
                "--apps",
                "core",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}/captaindata"
    key = uuid.uuid4().hex[:24]
    run_uid = str(uuid.uuid4())
    url = callback_url_for(base_url, SECRET, key)
    try:
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(SENDERS) as pool:
            others = [httpx.Client(timeout=60) for _ in range(SENDERS - 1)]
            deadline = time.monotonic() + 300
            while True:
                assert server.poll() is None, log_path.read_text()[-3000:]
                try:
                    if client.get(f"{base_url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API server did not answer"
                time.sleep(0.5)
            headers = {"content-type": "application/json"}
            warm = page(run_uid, -1)
            assert client.post(url, content=warm, headers=headers).status_code == 200  # S3 client, settings
            time.sleep(1.0)
            baseline = tree_rss(server.pid)
            sampler = RssSampler(server.pid)
            sampler.start()
            largest = 0
            after_100 = 0
            # Peak growth so far at these page counts: what the growth depends on (pages or not).
            at: dict[int, int] = {}

            def post(sender: int, body: bytes) -> httpx.Response:
                return (client, *others)[sender].post(url, content=body, headers=headers)

            started = time.perf_counter()
            for first in range(0, PAGES, SENDERS):
                bodies = [page(run_uid, i) for i in range(first, min(first + SENDERS, PAGES))]
                largest = max(largest, *map(len, bodies))
                if len(bodies) == 1:
                    answers = [post(0, bodies[0])]
                else:
                    answers = list(pool.map(post, range(len(bodies)), bodies))
                for answer in answers:
                    assert answer.status_code == 200, answer.text
                done = first + len(bodies)
                if first < min(100, PAGES) <= done:
                    after_100 = sampler.take_peak()
                if any(first < n <= done for n in (*CHECKPOINTS, PAGES)):
                    at[done] = max([sampler.take_peak(), after_100, *at.values()])
            wall = time.perf_counter() - started
            peak = max([sampler.take_peak(), after_100, *at.values()])
            # Then the largest page the receiver accepts (~9 MiB, under its 10 MiB default):
            # what one in-flight callback costs (issue 22 #4: ~310 MiB before).
            big = page(run_uid, PAGES, BIG_ROWS)
            before_big = tree_rss(server.pid)
            assert client.post(url, content=big, headers=headers).status_code == 200
            big_peak = sampler.take_peak()
            sampler.stopped.set()
            sampler.join()
            for other in others:
                other.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    stored = [
        o
        for o in s3_server.client()
        .list_objects_v2(Bucket=s3_server.bucket, Prefix=storage.split("/", 3)[3])
        .get("Contents", [])
    ]
    growth, growth_100 = peak - baseline, after_100 - baseline
    ratio = growth / largest
    flat = growth <= max(1.25 * growth_100, growth_100 + largest)
    rows = [
        Row(
            "receiver",
            f"pages/s, {PAGES:,} pages of {ROWS:,} rows to S3",
            PAGES / wall,
            None,
            "pages/s",
            "",
            None,
        ),
        Row("receiver", "peak RSS growth / largest body", ratio, 3.0, "x", "<= 3x", ratio <= 3.0),
        Row(
            "receiver",
            "RSS growth after all pages vs after 100",
            growth / max(growth_100, 1),
            1.25,
            "x",
            "flat",
            flat,
        ),
    ]
    details = {
        "pages": PAGES,
        "rows_per_page": ROWS,
        "senders": SENDERS,
        "largest_body_bytes": largest,
        "wall_s": wall,
        "pages_per_s": PAGES / wall,
        "baseline_rss_mib": baseline / 2**20,
        "peak_rss_mib_after_100": after_100 / 2**20,
        "peak_rss_mib": peak / 2**20,
        "growth_mib": growth / 2**20,
        "growth_mib_after_100": growth_100 / 2**20,
        "growth_mib_at_pages": {n: (rss - baseline) / 2**20 for n, rss in at.items()},
        "big_body_bytes": len(big),
        "big_rss_before_mib": before_big / 2**20,
        "big_peak_rss_mib": big_peak / 2**20,
        "storage": "SeaweedFS S3 through the API server's /captaindata mount (one uvicorn worker)",
    }
    recorder.section("receiver", details, rows)
    assert len(stored) >= min(PAGES, 1000)  # every page stored (listing is capped at 1,000 keys)
