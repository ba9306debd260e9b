"""Check the provider in the real Airflow 3 UI: the connection form and the task's extra link.

    .venv/bin/python scripts/ui_check.py

Needs Debian's ``chromium`` (installs nothing itself). Runs one example DAG with ``airflow dags
test`` against the emulator (so a task instance has a Captain Data run), starts the api-server
on 127.0.0.1 (state under ``.demo/ui-check/``), then drives headless Chromium over the DevTools
protocol: opens the Captain Data connection's form and the task's page, checks the fields and
the "Captain Data run" link are there, and saves screenshots to ``docs/img/``.

Exit code: 0 when every check passed, 1 when one failed, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_services import (
    DEMO_DIR,
    HOST,
    ROOT,
    AirflowApi,
    StepFailed,
    Supervisor,
    airflow,
    airflow_env,
    free_port,
    migrate,
    start_emulator,
    supervised,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",
]
BASE = DEMO_DIR / "ui-check"
LOG_DIR = BASE / "logs"
IMG_DIR = ROOT / "docs" / "img"
DAG_ID = "captaindata_workflow_xcom"
TASK_ID = "extract_profiles"
CONN_ID = "captaindata_ui_check"
LINK_NAME = "Captain Data run"
# What the connection form must show for the Captain Data type (provider info, Airflow 3.2+).
STANDARD_LABELS = ("API key", "API origin (optional)")
EXTRA_LABELS = (
    "Project (workspace) uid",
    "Live rate limit (requests/s)",
    "Callback base URL",
    "Callback secret",
    "Callback storage",
)


class Browser:
    """Headless Chromium driven over the DevTools protocol (one page, blocking calls)."""

    def __init__(self, supervisor: Supervisor, profile: Path) -> None:
        argv = [str(CHROMIUM), *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}"]
        # Started like the Airflow parts: stopped with its whole process group at the end.
        service = supervisor.start("chromium", argv, {"HOME": str(profile), "PATH": "/usr/bin:/bin"})
        port_file = profile / "DevToolsActivePort"  # where Chromium writes the port it took
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            supervisor.check()
            if time.monotonic() > deadline:
                raise StepFailed("chromium did not open its DevTools port", "run it by hand", service.log)
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://{HOST}:{port}/json/list", timeout=10).json()
        target = next(p for p in pages if p.get("type") == "page")
        from websockets.sync.client import connect

        self._exit = contextlib.ExitStack()  # websockets 17 wants its client used as a context
        self.ws = self._exit.enter_context(
            connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        )
        self.ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise StepFailed(f"chromium: {method}: {message['error']}", "see .demo/ui-check/logs/")
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return answer.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = 60.0) -> Any:
        """Poll a JS expression until it is truthy (the UI renders after its API calls)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise StepFailed(f"the page never showed {what}", "look at the screenshot saved next to it")

    def click_text(self, text: str, timeout: float = 15.0) -> None:
        """Click the first button whose visible text or aria-label is ``text`` (waits for it).

        A real mouse click at its position: some UI widgets ignore a scripted ``el.click()``."""
        box = self.wait_for(
            f"""(() => {{
              const want = {json.dumps(text)};
              const el = [...document.querySelectorAll('button, [role=button]')].find(e =>
                (e.innerText || '').trim() === want || e.getAttribute('aria-label') === want);
              if (!el) return null;
              el.scrollIntoView({{block: 'center'}});
              const r = el.getBoundingClientRect();
              return r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null;
            }})()""",
            f"a {text!r} button",
            timeout,
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def resize(self, width: int, height: int) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def type_into(self, selector: str, text: str) -> None:
        """Focus an input and type, as a user would (React only sees real input events)."""
        if not self.evaluate(
            f"(e => e ? (e.focus(), true) : false)(document.querySelector({json.dumps(selector)}))"
        ):
            raise StepFailed(
                f"no element {selector!r} on the page", "the Airflow UI changed: update ui_check.py"
            )
        self.send("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13
            )

    def close(self) -> None:
        self._exit.close()


class Checks:
    """Named pass/fail results, printed as they come."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}{f': {detail}' if detail else ''}", flush=True)
        if not ok:
            self.failed.append(name)


def prepare(supervisor: Supervisor) -> tuple[AirflowApi, str]:
    """Emulator, database, one example DAG run with ``airflow dags test``, the api-server."""
    shutil.rmtree(BASE, ignore_errors=True)
    print("ui-check: starting the emulator and creating the database", flush=True)
    emulator_url = start_emulator(supervisor, {"v3_running_seconds": 1.0})
    api_port = free_port()  # any free port: a running `make demo` keeps its own
    connection = {
        "conn_type": "captaindata",
        "host": emulator_url,
        "password": "cd_emulator_key",  # the emulator's default key
        "extra": {"project_uid": "5f0c2a8e-7b1d-4c3e-9a6f-1d2e3f4a5b6c"},
    }
    env = airflow_env(api_port, connection, {"CAPTAINDATA_EXAMPLE_POLL_SECONDS": "1"}, home=BASE / "airflow")
    migrate(env, LOG_DIR)
    print(f"ui-check: running {DAG_ID} with `airflow dags test`", flush=True)
    log = LOG_DIR / "dags-test.log"
    with log.open("wb") as out:
        code = subprocess.run(
            airflow("dags", "test", DAG_ID),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        ).returncode
    if code != 0:
        raise StepFailed(f"`airflow dags test {DAG_ID}` failed", "run the example tests to see why", log)
    print("ui-check: starting the api-server", flush=True)
    supervisor.start("api-server", airflow("api-server", "--host", HOST, "--port", str(api_port)), env)
    api = AirflowApi(f"http://{HOST}:{api_port}", LOG_DIR)
    api.wait_until_up(supervisor)
    runs = api.call("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]
    if not runs:
        raise StepFailed(f"no run of {DAG_ID} in the database", "read the dags test log", log)
    return api, runs[0]["dag_run_id"]


def check_connection_form(browser: Browser, api: AirflowApi, checks: Checks) -> None:
    browser.resize(1366, 1300)  # tall enough for the whole dialog
    browser.open(f"{api.base_url}/connections")
    browser.wait_for("document.body.innerText.includes('Add Connection')", "the connections list")
    browser.click_text("Add Connection")
    browser.wait_for("!!document.querySelector('[role=dialog] input[name=connection_id]')", "the add form")
    browser.type_into("[role=dialog] input[name=connection_id]", "captaindata_default")
    # The type picker is a searchable select: type the type's name and pick it with Enter.
    browser.type_into("[role=dialog] input:not([name])", "Captain Data")
    browser.press_enter()
    dialog = "(document.querySelector('[role=dialog]') || document.body)"
    browser.wait_for(f"{dialog}.innerText.includes('API key')", "the Captain Data fields")
    # The form's sections open one at a time: check (and picture) each while it is open.
    for section, labels, picture in (
        ("Standard Fields", STANDARD_LABELS, "connection-form.png"),
        ("Extra Fields", EXTRA_LABELS, "connection-form-extra.png"),
    ):
        if section != "Standard Fields":  # open at first
            browser.click_text(section)
        shown = json.dumps(list(labels))
        with contextlib.suppress(StepFailed):  # each missing label is reported below
            browser.wait_for(f"{shown}.every(t => {dialog}.innerText.includes(t))", section, timeout=15)
        for label in labels:
            visible = browser.evaluate(f"{dialog}.innerText.includes({json.dumps(label)})")
            checks.check(f"connection form shows {label!r}", bool(visible))
        time.sleep(0.5)  # let the section's animation end
        browser.screenshot(IMG_DIR / picture)
    browser.resize(1366, 900)


def check_extra_link(browser: Browser, api: AirflowApi, run_id: str, checks: Checks) -> None:
    ti = f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{TASK_ID}"
    run_uid = api.call("GET", f"{ti}/xcomEntries/run_uid", params={"deserialize": True, "stringify": False})[
        "value"
    ]
    links = api.call("GET", f"{ti}/links").get("extra_links", {})
    checks.check("REST API lists the link", str(links.get(LINK_NAME, "")).endswith(str(run_uid)), str(links))
    browser.open(f"{api.base_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{TASK_ID}/details")
    anchor = f"[...document.querySelectorAll('a')].find(a => a.innerText.trim() === {json.dumps(LINK_NAME)})"
    href = browser.wait_for(f"({anchor} || {{}}).href", f"the {LINK_NAME!r} link")
    checks.check(f"task page shows the {LINK_NAME!r} link", str(href).endswith(str(run_uid)), str(href))
    time.sleep(0.5)
    browser.screenshot(IMG_DIR / "task-extra-link.png")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    if not CHROMIUM.exists():
        print(f"ui-check: {CHROMIUM} is missing; install it with:")
        print("  apt-get install -y --no-install-recommends chromium")
        return 2
    started = time.monotonic()
    checks = Checks()
    try:
        with supervised(LOG_DIR) as supervisor:
            api, run_id = prepare(supervisor)
            print("ui-check: opening the UI in headless Chromium", flush=True)
            with tempfile.TemporaryDirectory(prefix="ui-check-chromium-") as profile:
                browser = Browser(supervisor, Path(profile))
                try:
                    check_connection_form(browser, api, checks)
                    check_extra_link(browser, api, run_id, checks)
                except StepFailed:
                    browser.screenshot(LOG_DIR / "failure.png")
                    raise
                finally:
                    browser.close()
                    api.close()
                    supervisor.stop_all(quiet=True)  # chromium first, before its profile goes
    except StepFailed as exc:
        exc.report("ui-check: FAILED: ")
        return 2
    except KeyboardInterrupt:
        print("\nui-check: interrupted; everything it started is stopped.")
        return 130
    took = time.monotonic() - started
    if checks.failed:
        print(f"ui-check: {len(checks.failed)} check(s) failed ({took:.0f} s); screenshots in docs/img/")
        return 1
    print(f"ui-check: every check passed ({took:.0f} s); screenshots in {IMG_DIR.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
