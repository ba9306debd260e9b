"""``CaptainDataRunFinishedTrigger``: an event trigger (``AssetWatcher``) that fires once per
finished Captain Data run, so a DAG can be scheduled on Captain Data's own runs.

It watches every run of a v3 workflow (started by this provider, a repeat schedule or the
Captain Data app) or the v4 async runs of the workspace (one action, or all; v4 schedules
included), by polling the run lists or, for v3, by reading the webhooks that the callback
receiver stored. Each finished run fires one event: a watermark (finish time floor plus the
uids already fired near it) is kept in the asset state store on Airflow 3.3+, so a triggerer
restart neither fires a run again nor skips one. Before 3.3 the watermark lives in memory:
see docs/howto/event-scheduling.md for what a restart does there.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.client.statuses import RunSnapshot
from airflow_provider_captaindata.client.versions import get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataError,
)

try:  # Airflow 3: what AssetWatcher accepts
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # Airflow 2.11 has no event-driven scheduling; the class still imports
    from airflow.triggers.base import BaseTrigger as BaseEventTrigger  # type: ignore[assignment]

log = logging.getLogger(__name__)

MODES = ("poll", "webhook")
# Runs (or stored webhooks) that become visible late, out of finish order, are still caught
# if they finished within this long before the newest one fired; older uids are forgotten.
OVERLAP_SECONDS = 3600.0
PENDING_MAX_AGE_SECONDS = 7 * 86400.0  # a webhook's run that never becomes final is dropped
V4_PAGE = 100  # the API's maximum limit for GET /runs
FINISH_FIELD = {"v3": "finish_time", "v4": "finished_at"}
STATE_KEY_PREFIX = "captaindata.run_finished"


def _epoch(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time from the API (``Z`` or an offset); None if absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class Watermark:
    """What has fired: ids seen at or after ``floor`` (with their time); older ones never fire."""

    floor: float = -math.inf
    seen: dict[str, float] = field(default_factory=dict)

    def is_new(self, key: str, at: float) -> bool:
        return key not in self.seen and at >= self.floor

    def add(self, key: str, at: float) -> None:
        self.seen[key] = at

    def advance(self) -> None:
        """Raise the floor to the newest time minus the overlap and forget what is below it."""
        if self.seen:
            self.floor = max(self.floor, max(self.seen.values()) - OVERLAP_SECONDS)
        self.seen = {k: t for k, t in self.seen.items() if t >= self.floor}

    def to_json(self) -> dict[str, Any]:
        return {"floor": None if self.floor == -math.inf else self.floor, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, data: Any) -> Watermark:
        if not isinstance(data, dict):
            return cls()
        floor = data.get("floor")
        seen = data.get("seen")
        seen = seen if isinstance(seen, dict) else {}
        return cls(
            floor=float(floor) if isinstance(floor, int | float) else -math.inf,
            seen={str(k): float(v) for k, v in seen.items() if isinstance(v, int | float)},
        )


@dataclass
class WatchState:
    """The trigger's persisted state: fired runs, and in webhook mode the webhooks read and the
    runs they named that are not final yet."""

    runs: Watermark = field(default_factory=Watermark)
    webhooks: Watermark = field(default_factory=Watermark)
    pending: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs.to_json(), "webhooks": self.webhooks.to_json(), "pending": self.pending}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatchState:
        pending = data.get("pending")
        pending = pending if isinstance(pending, dict) else {}
        return cls(
            runs=Watermark.from_json(data.get("runs")),
            webhooks=Watermark.from_json(data.get("webhooks")),
            pending={str(k): float(v) for k, v in pending.items() if isinstance(v, int | float)},
        )


class CaptainDataRunFinishedTrigger(BaseEventTrigger):
    """Fire one event per Captain Data run that finishes, for ``AssetWatcher`` (Airflow 3).

    The event payload (the asset event's ``extra["payload"]``) is
    ``{run_uid, api_version, status, state, workflow_uid | action, run_name, finished_at,
    message, source}``; ``state`` is ``succeeded``, ``partial``, ``failed`` or ``cancelled``.

    :param api_version: ``"v3"`` (workflow runs) or ``"v4"`` (async action runs).
    :param workflow_uid: v3: the workflow whose runs are watched (required in ``poll`` mode;
        in ``webhook`` mode None watches every workflow of the webhook).
    :param action: v4: only runs of this action (e.g. ``"linkedin-extract-people"``); None:
        every async run of the workspace.
    :param mode: ``"poll"`` (list the runs every ``poll_interval``) or ``"webhook"`` (v3: read
        the webhooks the callback receiver stored, and check each named run once).
    :param webhook_name: webhook mode: the name in the webhook URL given to Captain Data
        (``{receiver}/webhooks/v3/{webhook_name}/{token}``).
    :param states: fire only for runs ending in these states (``succeeded``, ``partial``,
        ``failed``, ``cancelled``); None: every finished run.
    :param captaindata_conn_id: the connection read on the triggerer (key, and in webhook mode
        ``callback_storage``).
    :param poll_interval: seconds between two looks.
    :param finished_after: ISO 8601 time: on a first start (no watermark stored yet) runs that
        finished after it fire; None: only runs finishing after the first look fire.
    :param max_pages: run-list pages read per look at most (v3: 50 runs a page, v4: 100).
    """

    def __init__(
        self,
        *,
        api_version: str = "v3",
        workflow_uid: str | None = None,
        action: str | None = None,
        mode: str = "poll",
        webhook_name: str = "default",
        states: Sequence[str] | None = None,
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
        finished_after: str | None = None,
        max_pages: int = 10,
    ) -> None:
        super().__init__()
        get_version(api_version)
        if mode not in MODES:
            raise CaptainDataConfigError(f"mode must be 'poll' or 'webhook', got {mode!r}")
        for name, value in (("workflow_uid", workflow_uid), ("action", action)):
            if value is not None and (not isinstance(value, str) or not value):
                raise CaptainDataConfigError(f"{name} must be a non-empty string or None, got {value!r}")
        if api_version == "v3":
            if action is not None:
                raise CaptainDataConfigError("action is for api_version='v4'; v3 watches a workflow_uid")
            if mode == "poll" and workflow_uid is None:
                raise CaptainDataConfigError("workflow_uid is required to poll the runs of a v3 workflow")
        else:
            if workflow_uid is not None:
                raise CaptainDataConfigError("workflow_uid is for api_version='v3'; v4 watches an action")
            if mode == "webhook":
                raise CaptainDataConfigError("mode='webhook' is v3 only: v4 has no run webhooks")
        from airflow_provider_captaindata.callbacks.webhooks import check_webhook_name

        check_webhook_name(webhook_name)
        allowed = ("succeeded", "partial", "failed", "cancelled")
        if states is not None and (
            isinstance(states, str) or not states or any(s not in allowed for s in states)
        ):
            raise CaptainDataConfigError(f"states must be a list of {', '.join(allowed)}, got {states!r}")
        if not isinstance(captaindata_conn_id, str) or not captaindata_conn_id:
            raise CaptainDataConfigError("captaindata_conn_id must be a connection id (a string)")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or poll_interval <= 0
        ):
            raise CaptainDataConfigError(
                f"poll_interval must be a number of seconds > 0, got {poll_interval!r}"
            )
        if finished_after is not None and _epoch(finished_after) is None:
            raise CaptainDataConfigError(
                "finished_after must be an ISO 8601 time such as '2026-01-01T00:00:00Z', "
                f"got {finished_after!r}"
            )
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
            raise CaptainDataConfigError(f"max_pages must be a whole number >= 1, got {max_pages!r}")
        self.api_version = api_version
        self.workflow_uid = workflow_uid
        self.action = action
        self.mode = mode
        self.webhook_name = webhook_name
        self.states = list(states) if states is not None else None
        self.captaindata_conn_id = captaindata_conn_id
        self.poll_interval = float(poll_interval)
        self.finished_after = finished_after
        self.max_pages = max_pages
        self._memory_state: dict[str, Any] | None = None  # before Airflow 3.3 (no state store)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "api_version": self.api_version,
                "workflow_uid": self.workflow_uid,
                "action": self.action,
                "mode": self.mode,
                "webhook_name": self.webhook_name,
                "states": self.states,
                "captaindata_conn_id": self.captaindata_conn_id,
                "poll_interval": self.poll_interval,
                "finished_after": self.finished_after,
                "max_pages": self.max_pages,
            },
        )

    @property
    def state_key(self) -> str:
        """The asset state store key: one watermark per watched target and mode."""
        target = self.workflow_uid or self.action or "*"
        return f"{STATE_KEY_PREFIX}.{self.api_version}.{self.mode}.{target}"

    def _hook(self) -> Any:
        from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

        return CaptainDataAsyncHook(self.captaindata_conn_id)

    # -- state ------------------------------------------------------------------------------

    def _store(self) -> Any:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return None
        try:
            store._single_accessor()  # one watched asset: the accessors act on it directly
        except AttributeError:  # another accessor class: its aget/aset are used as they are
            return store
        except ValueError:
            log.warning(
                "%s watches several assets: its watermark is kept in memory only (a restart "
                "starts from the first look again). Give each asset its own watcher.",
                self.state_key,
            )
            return None
        return store

    async def load_state(self) -> WatchState | None:
        """The stored watermark, or None on a first start."""
        store = self._store()
        data = self._memory_state if store is None else await store.aget(self.state_key)
        return WatchState.from_json(data) if isinstance(data, dict) else None

    async def save_state(self, state: WatchState) -> None:
        data = state.to_json()
        store = self._store()
        if store is None:
            self._memory_state = data
        else:
            await store.aset(self.state_key, data)

    # -- looking ----------------------------------------------------------------------------

    def finished_at(self, snapshot: RunSnapshot) -> float:
        # A final run without a parsable finish time counts as finished when first seen.
        return _epoch(snapshot.raw.get(FINISH_FIELD[self.api_version])) or time.time()

    async def list_recent_runs(self, hook: Any, floor: float) -> list[RunSnapshot]:
        """Runs listed newest first, page by page, until a page has nothing at or after ``floor``."""
        runs: list[RunSnapshot] = []
        for page in range(self.max_pages):
            if self.api_version == "v3":
                batch = await hook.list_workflow_runs(self.workflow_uid, page)
            else:
                batch = await hook.list_action_runs(
                    status=V4_FINAL_STATUSES,
                    action_name=self.action,
                    execution_mode="ASYNC",
                    limit=V4_PAGE,
                    offset=page * V4_PAGE,
                    sort="-finished_at",
                )
            runs.extend(batch)
            # v3 lists by creation: an old run still going keeps the scan on to its page.
            older = all(s.state.is_final and self.finished_at(s) < floor for s in batch)
            if not batch or older or (self.api_version == "v4" and len(batch) < V4_PAGE):
                break
        return runs

    async def webhook_runs(self, hook: Any, state: WatchState, baseline: bool) -> list[RunSnapshot]:
        """Read new stored webhooks, then check each run they name (and earlier pending ones)."""
        from airflow_provider_captaindata.callbacks.webhooks import WebhookStore

        settings = await hook.get_settings()
        store = WebhookStore(settings.callback_storage or "")
        events = await asyncio.to_thread(store.list_events, self.webhook_name, state.webhooks.floor)
        for name, received in events:
            if not state.webhooks.is_new(name, received):
                continue
            state.webhooks.add(name, received)
            if baseline:
                continue
            body = await asyncio.to_thread(store.read_event, self.webhook_name, name)
            if body is None:
                continue
            if self.workflow_uid is None or body.get("workflow_uid") == self.workflow_uid:
                state.pending.setdefault(str(body["job_uid"]), received)
        state.webhooks.advance()
        found = []
        for run_uid, since in list(state.pending.items()):
            try:
                snapshot = await hook.get_run("v3", run_uid)
            except CaptainDataAPIError as exc:
                if exc.is_retryable:
                    continue
                log.warning("Run %s named by a webhook cannot be read (%s): skipped", run_uid, exc)
                del state.pending[run_uid]
                continue
            if snapshot.state.is_final:
                found.append(snapshot)
                del state.pending[run_uid]
            elif time.time() - since > PENDING_MAX_AGE_SECONDS:
                log.warning("Run %s never finished within a week of its webhook: no longer watched", run_uid)
                del state.pending[run_uid]
        return found

    def payload(self, snapshot: RunSnapshot, at: float) -> dict[str, Any]:
        target = {"workflow_uid": snapshot.raw.get("workflow_uid") or self.workflow_uid}
        if self.api_version == "v4":
            target = {"action": snapshot.raw.get("action_name") or self.action}
        return {
            "run_uid": snapshot.uid,
            "api_version": self.api_version,
            "status": snapshot.status,
            "state": snapshot.state.value,
            **target,
            "run_name": snapshot.raw.get("name"),
            "finished_at": datetime.fromtimestamp(at, UTC).isoformat(),
            "message": snapshot.message,
            "source": self.mode,
        }

    async def look(self, hook: Any, state: WatchState, baseline: bool) -> list[tuple[RunSnapshot, float]]:
        """One look: the runs that finished since the watermark, oldest first (not yet marked)."""
        if self.mode == "webhook":
            runs = await self.webhook_runs(hook, state, baseline)
        else:
            runs = await self.list_recent_runs(hook, state.runs.floor)
        new: dict[str, tuple[RunSnapshot, float]] = {}
        for snapshot in runs:
            if snapshot.state.is_final and snapshot.uid:
                at = self.finished_at(snapshot)
                if state.runs.is_new(snapshot.uid, at):
                    new[snapshot.uid] = (snapshot, at)
        return sorted(new.values(), key=lambda item: item[1])

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        state = await self.load_state()
        baseline = state is None
        if state is None:
            state = WatchState()
            if self.finished_after is not None:
                state.runs.floor = state.webhooks.floor = _epoch(self.finished_after) or -math.inf
                baseline = False
        while True:
            try:
                finished = await self.look(hook, state, baseline)
            except CaptainDataError as exc:
                # Transient or not (a fixed connection makes the next look work), the watcher
                # keeps going: the triggerer log says why nothing fires.
                log.warning("%s: could not look for finished runs (%s)", self.state_key, exc)
            else:
                for snapshot, at in finished:
                    wanted = self.states is None or snapshot.state.value in self.states
                    if wanted and not baseline:
                        log.info("Run %s finished (%s): firing", snapshot.uid, snapshot.status)
                        yield TriggerEvent(self.payload(snapshot, at))
                    # Marked once the event is handed to the triggerer (at most once per run).
                    state.runs.add(snapshot.uid, at)
                    if not baseline:
                        await self.save_state(state)
                if baseline:
                    log.info(
                        "%s: %s finished runs before the first look, not fired", self.state_key, len(finished)
                    )
                    baseline = False
                state.runs.advance()
                await self.save_state(state)
            await asyncio.sleep(self.poll_interval)


V4_FINAL_STATUSES = tuple(
    status for status, state in get_version("v4").status_states.items() if state.is_final
)
