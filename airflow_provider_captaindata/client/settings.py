"""The Captain Data connection, read once into validated settings.

Kept apart from the hooks so the sync hook, the async hook and the callback receiver read a
connection the same way, and so the rules are testable without Airflow's database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from airflow_provider_captaindata.client.versions import V3, V4, ApiVersion
from airflow_provider_captaindata.exceptions import CaptainDataConfigError

CONN_TYPE = "captaindata"
DEFAULT_CONN_ID = "captaindata_default"
CLIENT_CONN_ID = "client"  # names a client built from values (no Airflow connection) in errors
DEFAULT_RATE_LIMIT = 1.0  # the smallest plan: never refused, slow until the connection says more
V1_DEFAULT_BASE_URL = "https://api.captaindata.com/v1"
API_VERSIONS = ("v1", "v3", "v4")


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hooks need from a connection. The key is a SecretStr: reprs show ``**********``."""

    conn_id: str
    api_key: SecretStr = field(repr=False)
    project_uid: str | None
    v3_base_url: str
    v4_base_url: str
    v1_base_url: str = V1_DEFAULT_BASE_URL
    api_version: str | None = None  # "v1" for a key of the current API: Test calls GET /v1/quotas
    rate_limit_per_second: float = DEFAULT_RATE_LIMIT
    callback_base_url: str | None = None
    callback_secret: SecretStr | None = field(default=None, repr=False)
    callback_storage: str | None = None
    deployment: str | None = None  # names this Airflow deployment in launch identities

    @classmethod
    def from_connection(cls, conn: Any, extra: dict[str, Any] | None = None) -> ConnectionSettings:
        """Validate an Airflow Connection; ``extra`` may be given when it was read asynchronously."""
        conn_id = conn.conn_id or DEFAULT_CONN_ID
        if extra is None:
            extra = conn.extra_dejson
        extra = _strip_form_prefix(extra or {})
        api_key = (conn.password or "").strip()
        if not api_key:
            raise CaptainDataConfigError(
                f"Connection {conn_id!r} has no API key: set its password field (labelled 'API key')."
            )
        if not all("!" <= char <= "~" for char in api_key):
            # Checked here, before any call: the HTTP clients fail on such a header with a raw
            # UnicodeEncodeError whose text and attributes hold part or all of the key.
            raise CaptainDataConfigError(
                f"Connection {conn_id!r}: the password field (labelled 'API key') has a character "
                "outside printable ASCII (for example a pasted curly quote or a space); paste the key "
                "again as plain text."
            )
        origin = _origin_from_host(conn_id, conn.host, conn.port, conn.schema)
        v3 = extra.get("v3_base_url") or (f"{origin}/v3" if origin else V3.default_base_url)
        v4 = extra.get("v4_base_url") or (f"{origin}/v4" if origin else V4.default_base_url)
        v1 = extra.get("v1_base_url") or (f"{origin}/v1" if origin else V1_DEFAULT_BASE_URL)
        api_version = str(extra.get("api_version") or "").strip().lower() or None
        if api_version not in (None, *API_VERSIONS):
            raise CaptainDataConfigError(
                f"Connection {conn_id!r}: api_version must be one of {', '.join(API_VERSIONS)}, "
                f"got {api_version!r}."
            )
        return cls(
            conn_id=conn_id,
            api_key=SecretStr(api_key),
            project_uid=(str(extra.get("project_uid") or "").strip() or None),
            v3_base_url=_check_url(conn_id, "v3_base_url", v3),
            v4_base_url=_check_url(conn_id, "v4_base_url", v4),
            v1_base_url=_check_url(conn_id, "v1_base_url", v1),
            api_version=api_version,
            rate_limit_per_second=_rate(conn_id, extra.get("rate_limit_per_second")),
            callback_base_url=(
                _check_url(conn_id, "callback_base_url", extra["callback_base_url"])
                if extra.get("callback_base_url")
                else None
            ),
            callback_secret=SecretStr(extra["callback_secret"]) if extra.get("callback_secret") else None,
            callback_storage=extra.get("callback_storage") or None,
            deployment=str(extra.get("deployment") or "").strip() or None,
        )

    @classmethod
    def resolve(
        cls,
        settings: ConnectionSettings | None,
        api_key: str | None,
        **fields: Any,
    ) -> ConnectionSettings:
        """The settings a client is built with: ``settings`` as given (from an Airflow
        connection), or ``api_key`` and the other fields checked by the connection's rules."""
        given = sorted(name for name, value in fields.items() if value is not None)
        if settings is not None:
            if api_key is not None or given:
                named = ", ".join(given or ["api_key"])
                raise CaptainDataConfigError(
                    f"settings: give either settings or api_key and its fields, not both ({named})"
                )
            return settings
        if not isinstance(api_key, str) or not api_key.strip():
            raise CaptainDataConfigError("api_key: the Captain Data API key is required (a non-empty string)")
        extra = {name: fields[name] for name in given if name != "base_url"}
        conn = _PlainConnection(CLIENT_CONN_ID, api_key, fields.get("base_url"))
        return cls.from_connection(conn, extra)

    def base_url(self, version: ApiVersion) -> str:
        return self.v3_base_url if version.name == "v3" else self.v4_base_url

    def auth_headers(self, version: ApiVersion) -> dict[str, str]:
        if version.name == "v3" and not self.project_uid:
            raise CaptainDataConfigError(
                f"Connection {self.conn_id!r} has no project uid, which every v3 call needs: "
                "set the 'Project (workspace) uid' field (extra 'project_uid')."
            )
        return version.auth_headers(self.api_key.get_secret_value(), self.project_uid)


@dataclass(frozen=True)
class _PlainConnection:
    # What ``from_connection`` reads of an Airflow connection, for a client built from values.
    conn_id: str
    password: str
    host: str | None
    port: int | None = None
    schema: str | None = None


def _strip_form_prefix(extra: dict[str, Any]) -> dict[str, Any]:
    # Airflow 2 forms may save fields as ``extra__captaindata__name``.
    prefix = f"extra__{CONN_TYPE}__"
    return {
        (k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in extra.items() if v not in ("", None)
    }


def _origin_from_host(conn_id: str, host: str | None, port: int | None, schema: str | None) -> str | None:
    if not host:
        return None
    host = host.strip().rstrip("/")
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if port and not parts.port:
        host = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    return _check_url(conn_id, "host", host)


def _check_url(conn_id: str, name: str, url: str) -> str:
    url = str(url).strip().rstrip("/")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        valid = False
    if not valid:
        raise CaptainDataConfigError(
            f"Connection {conn_id!r}: {name} must be an http(s) URL such as https://api.captaindata.com, "
            f"got {url!r}."
        )
    return url


def _rate(conn_id: str, value: Any) -> float:
    if value in (None, ""):
        return DEFAULT_RATE_LIMIT
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if not (rate > 0 and math.isfinite(rate)):
        raise CaptainDataConfigError(
            f"Connection {conn_id!r}: rate_limit_per_second must be a positive number (your plan's "
            f"requests per second, 1 to 40: v4 live calls and every v1 call), got {value!r}."
        )
    return rate
