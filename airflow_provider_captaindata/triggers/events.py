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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.client.statuses import RunSnapshot
from airflow_provider_captaindata.client.versions import epoch_seconds, get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataError,
)
from airflow_provider_captaindata.params import check_conn_id, seconds, whole_number
from airflow_provider_captaindata.triggers import event_state
from airflow_provider_captaindata.triggers.event_state import WatchState, fire_key

try:  # Airflow 3: what AssetWatcher accepts
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # Airflow 2.11 has no event-driven scheduling; the class still imports
    from airflow.triggers.base import BaseTrigger as BaseEventTrigger  # type: ignore[assignment]

log = logging.getLogger(__name__)

MODES = ("poll", "webhook")
PENDING_MAX_AGE_SECONDS = 7 * 86400.0  # a run never final within a week is no longer read
V4_PAGE = 100  # the API's maximum limit for GET /runs
FINISH_FIELD = {"v3": "finish_time", "v4": "finished_at"}
STATE_KEY_PREFIX = "captaindata.run_finished"


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
        check_conn_id(captaindata_conn_id)
        seconds("poll_interval", poll_interval)
        if finished_after is not None and epoch_seconds(finished_after) is None:
            raise CaptainDataConfigError(
                "finished_after must be an ISO 8601 time such as '2026-01-01T00:00:00Z', "
                f"got {finished_after!r}"
            )
        whole_number("max_pages", max_pages, minimum=1)
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
        store = self._store()
        if store is None:
            self._memory_state = state.to_json()
            return
        # Another triggerer may hold this trigger too (a handover): add to what it stored.
        stored = await store.aget(self.state_key)
        if isinstance(stored, dict):
            state.merge(WatchState.from_json(stored))
        await store.aset(self.state_key, state.to_json())

    # -- looking ----------------------------------------------------------------------------

    def finished_at(self, snapshot: RunSnapshot) -> float | None:
        """The run's finish time on Captain Data's clock; None if it is listed without one."""
        return epoch_seconds(snapshot.raw.get(FINISH_FIELD[self.api_version]))

    async def list_recent_runs(self, hook: Any, floor: float) -> list[RunSnapshot]:
        """Runs listed newest first, page by page, until a page has nothing at or after ``floor``.

        v3 lists by creation: a run still going when it falls behind that page is in
        ``pending`` (seen not final) and is read on its own, so the early stop cannot skip it.
        """
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
            older = all(s.state.is_final and (self.finished_at(s) or floor) < floor for s in batch)
            if not batch or older or (self.api_version == "v4" and len(batch) < V4_PAGE):
                break
        return runs

    async def read_webhooks(self, hook: Any, state: WatchState, baseline: bool) -> None:
        """Read new stored webhooks: each run they name becomes pending."""
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
            # Only the run uid is taken from the body: anyone holding the URL can post any
            # workflow_uid. Whose run it is comes from the API (see ``look``).
            state.pending.setdefault(str(body["job_uid"]), received)
        state.webhooks.advance()

    async def read_pending(self, hook: Any, state: WatchState, listed: set[str]) -> list[RunSnapshot]:
        """Read each pending run not in this look's list. A run leaves ``pending`` only once it
        is marked (after its event): an error on one run, or on the whole look, loses none."""
        found = []
        for run_uid in list(state.pending):
            if run_uid in listed:
                continue
            try:
                found.append(await hook.get_run(self.api_version, run_uid))
            except CaptainDataAPIError as exc:
                if not exc.is_retryable:
                    log.warning("Run %s cannot be read (%s): no longer watched", run_uid, exc)
                    del state.pending[run_uid]
                    continue
                log.warning("Run %s could not be read (%s): read again on the next look", run_uid, exc)
            except CaptainDataError as exc:
                log.warning("Run %s could not be read (%s): read again on the next look", run_uid, exc)
        return found

    def watches(self, snapshot: RunSnapshot) -> bool:
        """Whether the run, as the API returned it, belongs to the watched workflow."""
        return self.workflow_uid is None or snapshot.raw.get("workflow_uid") == self.workflow_uid

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

    async def look(self, hook: Any, state: WatchState, baseline: bool) -> list[Finished]:
        """One look: the runs that finished and are not marked yet, oldest first."""
        runs: list[RunSnapshot] = []
        if self.mode == "webhook":
            await self.read_webhooks(hook, state, baseline)
        else:
            runs = await self.list_recent_runs(hook, state.runs.floor)
            for snapshot in runs:
                if snapshot.uid and not snapshot.state.is_final:
                    state.pending.setdefault(snapshot.uid, time.time())
        from_pending = await self.read_pending(hook, state, {s.uid for s in runs})
        now = time.time()
        new: dict[str, Finished] = {}
        for snapshot in [*runs, *from_pending]:
            if not self.watches(snapshot):
                state.pending.pop(snapshot.uid, None)  # another workflow's run: never fires here
                continue
            if not snapshot.state.is_final or not snapshot.uid:
                continue
            key = fire_key(snapshot.uid, snapshot.status)
            at = self.finished_at(snapshot)
            if not state.is_new(key, at):
                if at is not None and snapshot.uid in state.pending and not state.is_marked(key):
                    log.warning(
                        "Run %s finished before the watermark's floor (over %.0f s before the "
                        "newest run fired): taken as fired, by another triggerer holding this "
                        "trigger (or read too late to tell)",
                        snapshot.uid,
                        event_state.OVERLAP_SECONDS,
                    )
                    state.mark(key, at, dated=True)  # so that no stored copy keeps it pending
                state.pending.pop(snapshot.uid, None)
                continue
            new[key] = Finished(snapshot, key, now if at is None else at, at is not None)
        fired = {item.snapshot.uid for item in new.values()}
        for uid, since in list(state.pending.items()):
            if uid not in fired and now - since > PENDING_MAX_AGE_SECONDS:
                log.warning("Run %s was not final within a week of being seen: no longer watched", uid)
                del state.pending[uid]
        return sorted(new.values(), key=lambda item: item.at)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        state = await self.load_state()
        baseline = state is None
        if state is None:
            state = WatchState()
            if self.finished_after is not None:
                state.runs.floor = state.webhooks.floor = epoch_seconds(self.finished_after) or -math.inf
                baseline = False
        while True:
            try:
                finished = await self.look(hook, state, baseline)
            except CaptainDataError as exc:
                # Transient or not (a fixed connection makes the next look work), the watcher
                # keeps going: the triggerer log says why nothing fires.
                log.warning("%s: could not look for finished runs (%s)", self.state_key, exc)
            else:
                for item in finished:
                    snapshot = item.snapshot
                    wanted = self.states is None or snapshot.state.value in self.states
                    if wanted and not baseline and not await self.fired_elsewhere(state, item):
                        log.info("Run %s finished (%s): firing", snapshot.uid, snapshot.status)
                        yield TriggerEvent(self.payload(snapshot, item.at))
                    # Marked once the event is handed to the triggerer (at most once per run).
                    state.mark(item.key, item.at, item.dated)
                    state.pending.pop(snapshot.uid, None)
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

    async def fired_elsewhere(self, state: WatchState, item: Finished) -> bool:
        """Whether another triggerer holding this trigger (a handover) marked the run since our
        look, or moved the floor past it: its stored state is merged in first."""
        stored = await self.load_state() if self._store() is not None else None
        if stored is not None:
            state.merge(stored)
        return not state.is_new(item.key, item.at if item.dated else None)


@dataclass(frozen=True)
class Finished:
    """A final run found by a look and not marked yet."""

    snapshot: RunSnapshot
    key: str  # run uid and status
    at: float  # finish time; the look's time for a run listed without one
    dated: bool  # whether ``at`` is the run's own finish time


V4_FINAL_STATUSES = tuple(
    status for status, state in get_version("v4").status_states.items() if state.is_final
)
