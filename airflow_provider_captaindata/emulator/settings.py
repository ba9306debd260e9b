"""Emulator settings: run timings, result sizes, rate limit and callback faults.

One dataclass, changed at run time through ``POST /_emulator/config`` (``configure()`` in
Python). Unknown names and bad values are refused with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CLI_PORT = 8089
DEFAULT_API_KEY = "cd_emulator_key"
DEFAULT_PROJECT_UID = "5f0c2a8e-7b1d-4c3e-9a6f-1d2e3f4a5b6c"
DEFAULT_SEED = 0

LAST_PAGE_HEADER_STYLES = ("absent", "empty", "null")
# v1 plan tiers and their rate limit (requests a second, all data endpoints together).
V1_TIER_RATES = {
    "Trial": 1.0,
    "Bronze": 2.0,
    "Silver": 10.0,
    "Gold": 10.0,
    "Platinum": 20.0,
    "Diamond": 20.0,
    "Titanium": 40.0,
}
BATCH_UID_SHAPES = ("page", "input")
MAX_CLOCK_SKEW_SECONDS = 600.0


@dataclass
class Settings:
    """Every knob of the emulator (see docs/emulator.md for what each one changes)."""

    # v3: a run is pending, then running, then finished (or its forced outcome).
    v3_pending_seconds: float = 0.2
    v3_running_seconds: float = 1.0
    v3_rows_per_input: int = 2
    v3_total_rows: int | None = None  # None: rows_per_input x number of inputs
    v3_page_size: int = 1000
    v3_max_parallel_inputs: int | None = None  # launching over it answers 429, as the plan limit does
    # v4 async runs: queued, then running; one callback per page of results per input.
    v4_queued_seconds: float = 0.2
    v4_running_seconds: float = 1.0
    v4_results_per_input: int = 1  # results of a non-list action, per input
    v4_search_total_results: int = 35  # rows a search/list action has for one input
    v4_last_page_header: str = "absent"  # X-Pagination-Next on the last page: absent, empty or null
    v4_credits: int = 100_000  # credits_max of the workspace
    validate_input_patterns: bool = True  # check input values against the document's URL patterns
    # Live calls: token bucket (capacity = rate, refilled at rate per second) and latency.
    rate_limit_per_second: float | None = None
    live_latency_seconds: float = 0.0
    # Callback delivery of async runs.
    callback_drop_rate: float = 0.0  # never sent; the record says FAILED
    callback_duplicate_rate: float = 0.0  # sent twice
    callback_fail_rate: float = 0.0  # sent, but recorded FAILED (a replay then duplicates it)
    callback_reorder: bool = False  # pages shuffled; the final-status page is not the last to arrive
    # What one batch uid names: "page" (the API reference: one per callback, what a replay
    # re-sends) or "input" (all pages of one input share it: the other shape a receiver meets).
    callback_batch_uid: str = "page"
    callback_concurrency: int = 16
    callback_timeout_seconds: float = 5.0
    # Each POST (replays too) goes this long after its record is made, the record RUNNING
    # meanwhile: neither the run's final status nor a replay's answer waits for it.
    callback_delay_seconds: float = 0.0
    request_log_limit: int = 100_000
    # v1: list pages, cursors, the plan's rate limit and what each answer costs.
    v1_search_total_results: int = 60  # results a search or employees listing has
    v1_page_size: int = 25  # people and companies search pages (server-defined)
    v1_employees_page_size: int = 10  # (uncertain) 10 in the document, 25 in the 2026 docs
    v1_cursor_ttl_seconds: float = 86_400.0  # a cursor older than this is refused (expired)
    v1_last_page_header: str = "absent"  # X-Pagination-Next on the last page: absent, empty or null
    v1_employees_2026_fields: bool = True  # employees carry tenure_*, sn_company_id, summary
    v1_plan: str | None = None  # plan tier whose rate limit applies (V1_TIER_RATES); None: no limit
    v1_quotas_per_minute: float | None = None  # GET /quotas has its own, lower limit; None: none
    # (uncertain) costs: the docs give 1 per search result, other sources 0.2.
    v1_credits_per_request: float = 1.0
    v1_credits_per_result: float = 1.0
    v1_credits_per_enrich: float = 1.0  # doubled with full_enrich
    v1_credits_per_find: float = 1.0
    # Captain Data's clock against this machine's: every date the API writes is shifted by it
    # (negative: the API's clock is behind), up to 10 minutes either way.
    clock_skew_seconds: float = 0.0
    # v3 webhooks (set in the Captain Data app, not by API): the workspace-wide URL, POSTed on
    # run created / succeeded / failed. Per-workflow URLs: POST /_emulator/webhooks.
    v3_webhook_url: str | None = None
    # v3 run lists show the final runs whose name matches this fnmatch glob without a finish
    # time (as the API has been seen to): a watcher must fire them once all the same.
    v3_list_undated_names: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` all or nothing; ValueError names the first bad setting."""
        checked = {name: _check(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_RATES = {"callback_drop_rate", "callback_duplicate_rate", "callback_fail_rate"}
_AT_LEAST_ONE = {
    "v3_page_size",
    "callback_concurrency",
    "request_log_limit",
    "v1_page_size",
    "v1_employees_page_size",
}


def setting_names() -> list[str]:
    return sorted(_FIELDS)


def _check(name: str, value: Any) -> Any:
    field = _FIELDS.get(name)
    if field is None:
        raise ValueError(f"unknown setting {name!r} (known: {', '.join(setting_names())})")
    annotation = str(field.type)
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ValueError(f"setting {name!r} cannot be null")
    if annotation.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError(f"setting {name!r} must be true or false, got {value!r}")
        return value
    if annotation.startswith("str"):
        if name == "v3_webhook_url" and not str(value).startswith(("http://", "https://")):
            raise ValueError(f"setting {name!r} must be an http(s) URL or null")
        if name == "v1_plan" and value not in V1_TIER_RATES:
            raise ValueError(f"setting {name!r} must be one of {', '.join(V1_TIER_RATES)} (or null)")
        if name in ("v4_last_page_header", "v1_last_page_header") and value not in LAST_PAGE_HEADER_STYLES:
            raise ValueError(f"setting {name!r} must be one of {', '.join(LAST_PAGE_HEADER_STYLES)}")
        if name == "callback_batch_uid" and value not in BATCH_UID_SHAPES:
            raise ValueError(f"setting {name!r} must be one of {', '.join(BATCH_UID_SHAPES)}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"setting {name!r} must be a number, got {value!r}")
    if name == "clock_skew_seconds":
        if abs(value) > MAX_CLOCK_SKEW_SECONDS:
            raise ValueError(f"setting {name!r} must be within {MAX_CLOCK_SKEW_SECONDS:.0f} s either way")
        return float(value)
    if value < 0:
        raise ValueError(f"setting {name!r} must not be negative, got {value!r}")
    if annotation.startswith("int"):
        if value != int(value):
            raise ValueError(f"setting {name!r} must be a whole number, got {value!r}")
        value = int(value)
    if name in _RATES and value > 1:
        raise ValueError(f"setting {name!r} is a probability between 0 and 1, got {value!r}")
    if name in _AT_LEAST_ONE and value < 1:
        raise ValueError(f"setting {name!r} must be at least 1, got {value!r}")
    if name in ("rate_limit_per_second", "v1_quotas_per_minute") and value == 0:
        raise ValueError(f"setting {name!r} must be positive (or null for no limit)")
    return float(value) if annotation.startswith("float") else value
