"""What both Captain Data hooks share: the connection metadata Airflow reads, and how a hook
hands an endpoint method to its client (:mod:`airflow_provider_captaindata.client`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_captaindata.client.policy import DEFAULT_POLICY, RetryPolicy
from airflow_provider_captaindata.client.settings import CONN_TYPE, DEFAULT_CONN_ID

_P = ParamSpec("_P")
_R = TypeVar("_R")


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


def delegate(method: Callable[Concatenate[Any, _P], _R]) -> Callable[Concatenate[Any, _P], _R]:
    """A hook method that calls the client's method of the same name: one home per endpoint,
    the client's signature and docstring on the hook."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: Any, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        result: _R = getattr(self.client, name)(*args, **kwargs)
        return result

    return call


def delegate_async(
    method: Callable[Concatenate[Any, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[Any, _P], Coroutine[Any, Any, _R]]:
    """:func:`delegate` for a coroutine method (the hook's stays a coroutine function)."""
    name = method.__name__

    @functools.wraps(method)
    async def call(self: Any, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        result: _R = await getattr(self.client, name)(*args, **kwargs)
        return result

    return call
