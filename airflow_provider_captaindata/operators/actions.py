"""``CaptainDataRunActionOperator``: run a v4 action live (one input or a paced fan-out over
many) or as an async run waited on deferrably."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_captaindata.client.action_inputs import (
    MAX_ASYNC_INPUTS,
    action_body,
    validate_action_input,
    validate_action_parameters,
)
from airflow_provider_captaindata.client.statuses import RunSnapshot, RunState
from airflow_provider_captaindata.client.versions import V4
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataOutcomeUnknown,
    CaptainDataRunError,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.launch_identity import lookup_since
from airflow_provider_captaindata.links import push_run_url
from airflow_provider_captaindata.operators.base import (
    CaptainDataRunOperatorBase,
    fail_without_retry_on_bad_request,
)
from airflow_provider_captaindata.params import (
    airflow_seconds,
    as_json_value,
    check_inputs,
    is_templated,
    seconds,
    whole_number,
)
from airflow_provider_captaindata.results import aborted_on_error, object_storage_path, open_sink

if TYPE_CHECKING:
    from airflow_provider_captaindata.operators.fanout import FanOutSpec

MODES = ("live", "async")
IDENTITY_MODES = ("direct", "auto", "managed")
LAUNCH_TAG_PARAM = "airflow_launch"  # added to the callback URL: how a retry finds its run


class CaptainDataRunActionOperator(CaptainDataRunOperatorBase):
    """Run a Captain Data v4 action on one input or many.

    * ``mode="live"``, one ``input``: one call; search/list actions follow
      ``X-Pagination-Next`` until the end or ``max_results``. Returns the answer (an object or
      the rows) to XCom, or streams rows to ``output_path``.
    * ``mode="live"``, ``inputs``: one live call per input, at most ``max_concurrency`` at a
      time, paced at the connection's ``rate_limit_per_second``. Every input gets one
      outcome; each row carries ``custom_data.airflow_input_index``. Rows are written in
      input order.
    * ``mode="async"``: one async run on all ``inputs`` (up to 100,000); Captain Data POSTs the
      result pages to a callback URL. The task waits on the run (deferrable), then returns
      every row, received by the provider's callback receiver (or, when you set
      ``callback_url`` and receive them yourself, the final run).

    :param action: the action name, e.g. ``linkedin-extract-people`` (templated).
    :param input: one input dict (templated). Exactly one of ``input`` and ``inputs``.
    :param inputs: a list of input dicts (templated; a template or XComArg that renders to a
        JSON string of that list is accepted).
    :param mode: ``"live"`` (default) or ``"async"``.
    :param parameters: the action's parameters.
    :param identity_ids: identities (connected accounts) that run the action.
    :param identity_mode: ``"direct"`` (needs ``identity_ids``), ``"auto"`` or ``"managed"``.
    :param integration_users: the legacy (first v4 release) form of ``identity_ids``; sent
        only when set.
    :param max_results: cap on rows per input for paginated (search/list) actions.
    :param max_concurrency: live calls in flight at once (default 5).
    :param on_input_error: ``"fail"`` (default): the task fails after the batch with a summary
        of failed inputs; ``"continue"``: it succeeds and the errors are part of the output
        (XCom key ``input_errors``; with ``output_path`` the summary counts them as ``failed``).
    :param callback_url: async mode: where Captain Data POSTs result pages, when you receive
        them yourself (the task then returns the final run). Leave it unset to have the
        provider's callback receiver take them (the connection's ``callback_base_url``,
        ``callback_secret`` and ``callback_storage``): the task then returns every row.
    :param callback_headers: async mode: headers Captain Data sends with each callback.
    :param callback_url_ttl: async mode with the receiver: how long the signed callback URL is
        accepted (seconds or timedelta); later pages and replays are refused (403). Default:
        the task's whole wait, ``timeout`` or ``execution_timeout`` (the shorter) for each of
        ``retries`` + 1 tries plus the retry delays and the replays, with 2 days' margin, and
        at least 7 days; 90 days when the task has neither limit.
    :param on_missing_pages: async mode with the receiver: pages still missing after replays
        ``"fail"`` the task (default) or only ``"warn"``.
    :param partial_success: async mode, a ``PARTIAL_SUCCEEDED`` run: ``"warn"`` (default,
        succeed with a warning) or ``"fail"``.

    Waiting, timeouts and results parameters are those of
    :class:`~airflow_provider_captaindata.operators.base.CaptainDataRunOperatorBase`.
    """

    api_version: ClassVar[str] = "v4"
    template_fields = (
        "action",
        "input",
        "inputs",
        "parameters",
        "identity_ids",
        "identity_mode",
        "integration_users",
        "callback_url",
        "callback_headers",
        "output_path",
        "captaindata_conn_id",
    )
    template_fields_renderers = {"input": "json", "inputs": "json", "parameters": "json"}

    def __init__(
        self,
        *,
        action: str,
        input: Mapping[str, Any] | str | None = None,
        inputs: Sequence[Mapping[str, Any]] | str | None = None,
        mode: str = "live",
        parameters: Mapping[str, Any] | None = None,
        identity_ids: Sequence[str] | None = None,
        identity_mode: str | None = None,
        integration_users: Sequence[str] | None = None,
        max_results: int | None = None,
        max_concurrency: int = 5,
        on_input_error: str = "fail",
        callback_url: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        callback_url_ttl: float | timedelta | None = None,
        partial_success: str = "warn",
        on_missing_pages: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.action = action
        # Any: a template or XComArg until rendered, then a dict / a list of dicts.
        self.input: Any = input
        self.inputs: Any = inputs
        self.mode = mode
        self.parameters = parameters
        self.identity_ids = identity_ids
        self.identity_mode = identity_mode
        self.integration_users = integration_users
        self.max_results = max_results
        self.max_concurrency = max_concurrency
        self.on_input_error = on_input_error
        self.callback_url = callback_url
        self.callback_headers = callback_headers
        self.callback_url_ttl = seconds("callback_url_ttl", callback_url_ttl, optional=True)
        self.partial_success = partial_success
        self.on_missing_pages = on_missing_pages
        self._validate(rendered=False)

    # -- validation (before any HTTP call) -----------------------------------------------------

    def _validate(self, *, rendered: bool) -> None:
        def choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
            if value not in allowed:
                raise CaptainDataConfigError(
                    f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
                )

        choice("mode", self.mode, MODES)
        choice("on_input_error", self.on_input_error, ("fail", "continue"))
        choice("partial_success", self.partial_success, ("warn", "fail"))
        choice("on_missing_pages", self.on_missing_pages, ("fail", "warn"))
        whole_number("max_concurrency", self.max_concurrency, minimum=1)
        whole_number("max_results", self.max_results, minimum=1, optional=True)
        if (self.input is None) == (self.inputs is None):
            raise CaptainDataConfigError(
                "Pass either input (one dict) or inputs (a list of dicts), "
                + ("not both." if self.input is not None else "not neither.")
            )
        if self.mode == "async" and self.inputs is None:
            raise CaptainDataConfigError("inputs: async mode runs on a list of inputs; pass inputs=[...]")
        self._validate_request_fields(rendered=rendered)
        ready = rendered or not any(
            is_templated(v)
            for v in (self.action, self.input, self.inputs, self.identity_mode, self.identity_ids)
        )
        if not ready:
            return
        if not isinstance(self.action, str) or not self.action.strip():
            raise CaptainDataConfigError(f"action must be an action name, got {self.action!r}")
        if self.identity_mode is not None:
            choice("identity_mode", self.identity_mode, IDENTITY_MODES)
            if self.identity_mode == "direct" and not self.identity_ids and not self.integration_users:
                raise CaptainDataConfigError(
                    "identity_ids: identity_mode='direct' needs at least one identity uid "
                    "(or use identity_mode='auto' or 'managed')"
                )
        if self.input is not None:
            item = as_json_value("input", self.input) if rendered else self.input
            validate_action_input(self.action, item)
            self.input = dict(item)
        else:
            items = check_inputs("inputs", as_json_value("inputs", self.inputs) if rendered else self.inputs)
            if len(items) > MAX_ASYNC_INPUTS:
                raise CaptainDataConfigError(f"inputs: at most {MAX_ASYNC_INPUTS} inputs, got {len(items)}")
            for index, item in enumerate(items):
                validate_action_input(self.action, item, where=f"inputs[{index}]")
            self.inputs = items
        parameters = self.parameters
        if parameters is not None and (
            rendered or not (is_templated(parameters) or any(map(is_templated, dict(parameters).values())))
        ):
            validate_action_parameters(self.action, parameters)

    def _validate_request_fields(self, *, rendered: bool) -> None:
        """Types of the request fields other than the inputs: each checked once it is rendered."""

        def value(name: str) -> Any:
            current = getattr(self, name)
            if current is None or (not rendered and is_templated(current)):
                return None
            if rendered and name != "callback_url":
                current = as_json_value(name, current)
                setattr(self, name, current)
            return current

        parameters = value("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise CaptainDataConfigError(f"parameters must be a dict, got {parameters!r:.80}")
        for name in ("identity_ids", "integration_users"):
            ids = value(name)
            if ids is not None and (
                isinstance(ids, str | bytes)
                or not isinstance(ids, Sequence)
                or not all(isinstance(i, str) and i for i in ids)
            ):
                raise CaptainDataConfigError(
                    f"{name} must be a list of identity uids (strings), got {ids!r:.80}"
                )
        url = value("callback_url")
        if url is not None:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise CaptainDataConfigError(f"callback_url must be an http(s) URL, got {url!r:.80}")
        headers = value("callback_headers")
        if headers is not None and not (
            isinstance(headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise CaptainDataConfigError(
                f"callback_headers must be a dict of header names to string values, got {headers!r:.80}"
            )

    def validate_rendered(self) -> None:
        self._validate(rendered=True)
        if self.mode == "async" and not self.callback_url:
            self.receiver_settings()  # no receiver configured: fail before the launch

    def receiver_settings(self) -> tuple[str, str, str]:
        """(callback_base_url, callback_secret, callback_storage) of the connection, all required
        when the provider's receiver takes the results."""
        from airflow_provider_captaindata.callbacks.tokens import require_callback_settings

        try:
            return require_callback_settings(self.hook.settings)
        except CaptainDataConfigError as exc:
            raise CaptainDataConfigError(
                "callback_url: async runs POST their results to a callback URL. Set callback_url, or "
                f"configure the callback receiver. {exc}"
            ) from None

    def _body(self, **inputs: Any) -> dict[str, Any]:
        return action_body(
            inputs.get("input"),
            self.parameters,
            self.identity_ids,
            self.identity_mode,
            self.integration_users,
            inputs=inputs.get("inputs"),
        )

    # -- live --------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        if self.mode == "async":
            return super().execute(context)
        self.bind_output_path(context)
        with fail_without_retry_on_bad_request():
            if self.output_path:
                object_storage_path(self.output_path)
            self.validate_rendered()
        from airflow_provider_captaindata.assets import record_landed
        from airflow_provider_captaindata.operators.fanout import run_live_fanout

        # Live calls have no run to link to: the link opens the runs list, where they show too.
        push_run_url(self, context["ti"], V4.app_run_url.rsplit("/", 1)[0])
        with fail_without_retry_on_bad_request():
            if self.input is not None:
                try:
                    return record_landed(self, context, self._live_single_once(context))
                except CaptainDataOutcomeUnknown as exc:
                    # A task retry would send it again: fail for a person to check instead.
                    raise AirflowFailException(str(exc)) from exc
            # Per-input API errors are recorded, not raised: only the connection's own
            # problems (a missing key, a bad rate limit) reach this, and a retry cannot mend them.
            return record_landed(
                self, context, run_live_fanout(self.fanout_spec(), list(self.inputs or []), context)
            )

    def fanout_spec(self) -> FanOutSpec:
        """This task's fan-out, fixed from its rendered parameters (see operators/fanout.py)."""
        from airflow_provider_captaindata.operators.fanout import FanOutSpec

        return FanOutSpec(
            action=self.action,
            conn_id=self.captaindata_conn_id,
            output_path=self.output_path,
            max_xcom_bytes=self.max_xcom_bytes,
            max_concurrency=self.max_concurrency,
            max_results=self.max_results,
            on_input_error=self.on_input_error,
            body=lambda item: self._body(input=item),
            hook=self.hook,
            log=self.log,
        )

    def _live_single_once(self, context: Any) -> Any:
        """The live call; an acting action's is recorded as a fan-out input is, so that neither
        a lost answer nor a task retry after a worker crash sends it twice, and a retry after
        it succeeded (a failed XCom push) returns the recorded result without a call."""
        from airflow_provider_captaindata.checkpoint import DONE, UNKNOWN, call_mark
        from airflow_provider_captaindata.operators.fanout import acting_records, earlier_unknown

        records = acting_records(self.fanout_spec(), context)
        if records is None:
            return self._live_single()
        mark = call_mark(self.action, self._body(input=self.input))
        earlier = records.earlier(0, mark)
        if earlier is not None and earlier.get("state") == DONE:
            self.log.info("%s was sent by an earlier try: its recorded result is returned", self.action)
            return earlier.get("result")
        if earlier is not None:
            raise AirflowFailException(earlier_unknown(earlier))
        records.claim()
        records.sending(0, mark)
        try:
            result = self._live_single()
        except CaptainDataOutcomeUnknown:
            records.outcome(0, mark, UNKNOWN)
            raise
        except (CaptainDataAPIError, CaptainDataTransportError):  # refused: nothing was done
            records.outcome(0, mark, "failed")
            raise
        # Kept, not cleared: this try may still fail after execute() returns (checkpoint.py).
        records.outcome(0, mark, DONE, result=result)
        return result

    def _live_single(self) -> Any:
        assert isinstance(self.input, Mapping)
        pages = self.hook.iter_live_pages(
            self.action,
            self.input,
            parameters=self.parameters,
            identity_ids=self.identity_ids,
            identity_mode=self.identity_mode,
            integration_users=self.integration_users,
        )
        first = next(pages)
        if not isinstance(first, list):
            # A single-object action: the object itself is the result.
            if not self.output_path:
                return first
            with aborted_on_error(open_sink(self.output_path)) as sink:
                sink.add_page([first])
                return sink.finish(action=self.action)
        with aborted_on_error(open_sink(self.output_path, max_xcom_bytes=self.max_xcom_bytes)) as sink:
            page: list[dict[str, Any]] | None = first
            count = 0
            while page is not None:
                if self.max_results is not None:
                    page = page[: self.max_results - sink.rows]
                sink.add_page(page)
                count += 1
                self.log.info("%s: page %s, %s rows so far", self.action, count, sink.rows)
                if self.max_results is not None and sink.rows >= self.max_results:
                    self.log.info(
                        "%s: max_results=%s reached, not fetching more pages", self.action, self.max_results
                    )
                    break
                page = next(pages, None)
            return sink.finish(action=self.action)

    # -- async -------------------------------------------------------------------------------

    def launch_fingerprint(self) -> dict[str, Any]:
        return {
            "api": "v4",
            "action": self.action,
            "inputs": self.inputs,
            "parameters": self.parameters,
            "identity_ids": self.identity_ids,
            "identity_mode": self.identity_mode,
            "integration_users": self.integration_users,
            "callback_url": self.callback_url,  # yours, before the launch key is added
            "callback_headers": self.callback_headers,
        }

    def launch_key(self, context: Any) -> str:
        """24 hex characters of the launch identity, carried by the callback URL."""
        return self.launch_identity(context).launch_key

    def callback_url_for_launch(self, context: Any) -> str:
        """The receiver's signed URL for this launch, or the author's ``callback_url`` tagged with
        the launch key; either way a retry can find the run by its callback URL."""
        if not self.callback_url:
            from airflow_provider_captaindata.callbacks.tokens import callback_url_for

            base_url, secret, _ = self.receiver_settings()
            ttl = self.callback_url_ttl or self.default_callback_url_ttl()
            return callback_url_for(base_url, secret, self.launch_key(context), ttl_seconds=ttl)
        parts = urlsplit(str(self.callback_url))
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != LAUNCH_TAG_PARAM]
        query.append((LAUNCH_TAG_PARAM, self.launch_key(context)))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def default_callback_url_ttl(self) -> float:
        """A callback URL lifetime covering every try of this task, retries and replays included:
        a retry resumes the same run, whose URL cannot change."""
        from airflow_provider_captaindata.callbacks.reconcile import DEFAULT_REPLAY_WAIT_SECONDS
        from airflow_provider_captaindata.callbacks.tokens import lifetime_covering

        limits = [s for s in (self.timeout_seconds, airflow_seconds(self.execution_timeout)) if s]
        if not limits:
            return lifetime_covering(None)
        retries = int(self.retries or 0)
        delay = airflow_seconds(self.retry_delay) or 0.0
        if self.retry_exponential_backoff:
            delay = airflow_seconds(self.max_retry_delay) or 86400.0  # Airflow caps a retry delay at a day
        per_try = min(limits) + DEFAULT_REPLAY_WAIT_SECONDS
        return lifetime_covering((retries + 1) * per_try + retries * delay)

    def find_earlier_run(self, context: Any, exclude: Sequence[str]) -> tuple[RunSnapshot | None, str]:
        key = self.launch_key(context)
        run = self.hook.find_action_run_by_callback(
            self.action, key, since=lookup_since(context), exclude=exclude
        )
        return (V4.snapshot(run.model_dump()) if run else None), f"found by launch key {key}"

    def launch(self, context: Any, stale_run_uids: list[str]) -> str:
        run_uid = self.hook.run_action_async_once(
            self.action,
            list(self.inputs or []),
            callback_url=self.callback_url_for_launch(context),
            launch_tag=self.launch_key(context),
            stale_run_uids=stale_run_uids,
            callback_headers=self.callback_headers,
            parameters=self.parameters,
            identity_ids=self.identity_ids,
            identity_mode=self.identity_mode,
            integration_users=self.integration_users,
        )
        self.log.info("Launched %s async on %s inputs: run %s", self.action, len(self.inputs or []), run_uid)
        return run_uid

    def check_success(self, event: dict[str, Any]) -> None:
        if V4.state_of(event.get("run_status")) is RunState.PARTIAL:
            if self.partial_success == "fail":
                raise CaptainDataRunError(
                    event["run_uid"], str(event["run_status"]), event.get("message") or ""
                )
            self.log.warning("Run %s finished with some errors (%s)", event["run_uid"], event.get("message"))

    def collect(self, context: Any, run_uid: str) -> Any:
        if self.callback_url:
            # The author receives the pages at their own URL: the task returns the final run.
            from airflow_provider_captaindata.client.scrub import scrub

            # Its last error may name a signed URL (a page's), token included: not into XCom.
            return scrub(self.hook.get_action_run(run_uid).model_dump(mode="json"))
        from airflow_provider_captaindata.callbacks.reconcile import reconcile_run

        _, _, storage = self.receiver_settings()
        report = reconcile_run(self.hook, run_uid, self.launch_key(context), storage, log=self.log)
        report.check(self.on_missing_pages, log=self.log)
        context["ti"].xcom_push(key="callback_summary", value=report.summary())
        with aborted_on_error(open_sink(self.output_path, max_xcom_bytes=self.max_xcom_bytes)) as sink:
            for page in report.iter_pages():
                sink.add_page(page)
            self.log.info("Run %s: %s rows from %s stored pages", run_uid, sink.rows, report.received)
            return sink.finish(**report.summary())

    def result_pages(self, run_uid: str) -> Iterable[list[dict[str, Any]]]:
        return iter(())
