"""How a call is addressed and authenticated, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from airflow_provider_captaindata.client.paging import same_origin_url
from airflow_provider_captaindata.client.policy import ApiRequest
from airflow_provider_captaindata.client.settings import CLIENT_CONN_ID, ConnectionSettings
from airflow_provider_captaindata.client.transport import callback_secrets
from airflow_provider_captaindata.client.versions import ApiVersion
from airflow_provider_captaindata.exceptions import (
    CaptainDataError,
    CaptainDataOutcomeUnknown,
    may_have_acted,
)


def build_request(
    settings: ConnectionSettings,
    version: ApiVersion,
    method: str,
    path_or_url: str,
    *,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    idempotent: bool = True,
) -> ApiRequest:
    """The request for a path under the version's base URL, or for a page URL from an answer."""
    base = settings.base_url(version)
    # Anything but one of our paths ("/...") is a URL from an answer (v3 ``paging.next``,
    # v4 ``X-Pagination-Next``). It gets the auth headers, so it is sent only rebuilt on the
    # API's own origin (appended to the base, ``@evil.example`` would name a host).
    url = base + path_or_url if path_or_url.startswith("/") else same_origin_url(path_or_url, base)
    return ApiRequest(
        method,
        url,
        settings.auth_headers(version),
        json=json,
        params=params,
        idempotent=idempotent,
        secrets=(settings.api_key.get_secret_value(), *callback_secrets(json)),
        # Errors name the Airflow connection to fix; a client built from values has none.
        conn_id="" if settings.conn_id == CLIENT_CONN_ID else settings.conn_id,
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
    """The query of ``GET /v4/runs`` for both clients: filters left out when not given, ``status``
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
