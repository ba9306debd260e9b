"""What both Captain Data hooks share: the connection metadata Airflow reads and how a call
is addressed and authenticated."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_captaindata.client.settings import CONN_TYPE, DEFAULT_CONN_ID, ConnectionSettings
from airflow_provider_captaindata.client.transport import (
    DEFAULT_POLICY,
    ApiRequest,
    RetryPolicy,
    describe_origin,
    origin_key,
)
from airflow_provider_captaindata.client.versions import ApiVersion
from airflow_provider_captaindata.exceptions import (
    CaptainDataError,
    CaptainDataOutcomeUnknown,
    may_have_acted,
)


def v4_runs_params(
    *,
    status: str | Sequence[str] | None,
    action_name: str | None,
    execution_mode: str | None,
    limit: int,
    offset: int,
    sort: str,
) -> dict[str, Any]:
    """The query of ``GET /v4/runs`` for both hooks: filters left out when not given, ``status``
    repeated once per value."""
    statuses = [status] if isinstance(status, str) else list(status or ())
    given = {
        "status": statuses or None,
        "action_name": action_name,
        "execution_mode": execution_mode,
        "limit": limit,
        "offset": offset,
        "sort": sort,
    }
    return {key: value for key, value in given.items() if value is not None}


class CaptainDataBaseHook(BaseHook):
    """Connection metadata shared by both hooks (Airflow reads these class attributes)."""

    conn_name_attr = "captaindata_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Captain Data"

    def __init__(
        self,
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        *,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.captaindata_conn_id = captaindata_conn_id
        self.retry_policy = retry_policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(captaindata_conn_id={self.captaindata_conn_id!r})"

    def _request(
        self,
        settings: ConnectionSettings,
        version: ApiVersion,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> ApiRequest:
        base = settings.base_url(version)
        if "://" in path_or_url:
            # An absolute URL comes from an answer (v3 ``paging.next``, v4 ``X-Pagination-Next``):
            # it gets the auth headers, so it must stay on the API's origin. Compared as
            # (scheme, host, port): an http URL under an https API would send the key in clear.
            _check_same_origin(path_or_url, base)
            url = path_or_url
        else:
            url = base + path_or_url
        return ApiRequest(
            method,
            url,
            settings.auth_headers(version),
            json=json,
            params=params,
            idempotent=idempotent,
            secrets=(settings.api_key.get_secret_value(),),
            conn_id=settings.conn_id,
        )


@contextmanager
def live_call(action: str) -> Iterator[bool]:
    """Around one live call: yields whether it may be re-sent (reads may), and turns an
    ambiguous failure of an action with effects into ``CaptainDataOutcomeUnknown``.

    Such a call goes out as not idempotent, so the transport re-sends it only when it surely
    was not processed (a 429, a connection that never opened)."""
    from airflow_provider_captaindata.client.catalog import has_effects

    effects = has_effects(action)
    try:
        yield not effects
    except CaptainDataError as exc:
        if effects and may_have_acted(exc):
            raise CaptainDataOutcomeUnknown(action, str(exc)) from exc
        raise


def _check_same_origin(url: str, base_url: str) -> None:
    try:
        same = origin_key(url) == origin_key(base_url)
        foreign = describe_origin(url)
    except ValueError:  # a malformed host or port: not the API's origin
        same, foreign = False, "an unparsable URL"
    if not same:
        raise CaptainDataError(
            f"A page URL from the API points to another origin, {foreign}; it was not called "
            "because the request would carry the API key there. Check the connection's base URL "
            "and any proxy in front of the API."
        )
