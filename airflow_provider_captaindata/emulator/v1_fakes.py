"""Fake v1 records shaped by the v1 document's response schemas (``client/catalog/v1_api.json``).

A record is built by walking its schema: every property the schema lists, nested objects
with exactly their listed properties (the document allows no others in experiences,
education, skills and affiliates), each value of the schema's type. Values come from one
seeded persona, so a record is the same for the same key, its LinkedIn URLs have the
``https://www.linkedin.com/...`` form and its uids are stable: what it returns is accepted
back as an input. Fields vary as the live API's do: optional ones are sometimes missing, and
employees carry the fields added in 2026.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_captaindata.emulator.fakes import (
    COMPANIES,
    LI,
    SKILLS,
    persona,
    row_random,
    sentence,
    slug,
    value_maker,
)
from airflow_provider_captaindata.emulator.state import stable_uid

# Never left out of a record: what a caller chains on or reads first.
KEY_FIELDS = frozenset(
    {"uid", "li_profile_url", "li_company_url", "full_name", "company_name", "li_profile_id", "li_company_id"}
)
MISSING_FIELD_CHANCE = 0.08
# Fields the employees output gained in 2026 (not in the December 2025 document).
EMPLOYEES_2026_FIELDS = ("tenure_start", "tenure_months", "sn_company_id", "summary")
EMPLOYEE_RANGES = ("2-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000")

Person = Mapping[str, Any]
_Special = Callable[[Person, random.Random], Any]


def person_uid(p: Person) -> str:
    return stable_uid("v1-person", p["handle"])


def company_uid(p: Person) -> str:
    return stable_uid("v1-company", p["company_handle"])


_SPECIAL: dict[str, _Special] = {
    "uid": lambda p, rng: person_uid(p),
    "li_profile_url": lambda p, rng: f"{LI}/in/{p['handle']}",
    "li_profile_handle": lambda p, rng: p["handle"],
    "li_profile_id": lambda p, rng: p["profile_id"],
    "li_company_id": lambda p, rng: p["company_id"],
    "li_company_url": lambda p, rng: f"{LI}/company/{p['company_handle']}",
    "company_uid": lambda p, rng: company_uid(p),
    "sn_company_url": lambda p, rng: f"{LI}/sales/company/{p['company_id']}",
    "li_employees_url": lambda p, rng: f"{LI}/company/{p['company_handle']}/people",
    "li_job_search_url": lambda p, rng: f"{LI}/jobs/search/?f_C={p['company_id']}",
    "li_people_post_search_url": lambda p, rng: f"{LI}/search/results/content/?fromMember={p['handle']}",
    "li_school_url": lambda p, rng: f"{LI}/school/{slug(p['school'])}",
    "website": lambda p, rng: f"https://www.{p['domain']}",
    "domain": lambda p, rng: p["domain"],
    "founded_on": lambda p, rng: rng.randrange(1950, 2024),
    "employees_range": lambda p, rng: rng.choice(EMPLOYEE_RANGES),
    "birth_date": lambda p, rng: (
        f"{rng.randrange(1960, 2002)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    ),
    "li_profile_country": lambda p, rng: p["country"],
    "li_profile_language": lambda p, rng: "en",
    "job_time_period": lambda p, rng: f"{rng.randrange(1, 11)} yrs {rng.randrange(1, 12)} mos",
    "type": lambda p, rng: rng.choice(("Privately Held", "Public Company", "Self-Employed")),
}
_STRING_LISTS: dict[str, _Special] = {
    "languages": lambda p, rng: rng.sample(["English", "French", "Spanish", "German"], 2),
    "industries": lambda p, rng: [p["industry"]],
    "specialties": lambda p, rng: rng.sample(SKILLS, 2),
}


def _type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type", "string")
    return str(kind[0] if isinstance(kind, list) else kind)


def value(name: str, schema: Mapping[str, Any], p: Person, rng: random.Random) -> Any:
    kind = _type(schema)
    if kind == "object":
        return {k: value(k, s, p, rng) for k, s in (schema.get("properties") or {}).items()}
    if kind == "array":
        items = schema.get("items") or {}
        if _type(items) == "object":
            count = rng.randrange(1, 3)
            return [value(name, items, persona(rng) if name != "skills" else p, rng) for _ in range(count)]
        if name in _STRING_LISTS:
            return _STRING_LISTS[name](p, rng)
        return [sentence(rng, 2).rstrip(".") for _ in range(rng.randrange(0, 3))]
    special = _SPECIAL.get(name)
    if name == "name" and kind == "string":
        return rng.choice(SKILLS)
    if special is not None:
        made = special(p, rng)
        return _as(kind, made)
    return _as(kind, _fallback(name, kind, str(schema.get("format") or ""))(p, rng))


def _as(kind: str, made: Any) -> Any:
    if kind == "string":
        return str(made)
    if kind in ("integer", "number") and not isinstance(made, int | float):
        digits = "".join(c for c in str(made) if c.isdigit())
        return int(digits or 0)
    if kind == "boolean":
        return bool(made)
    return made


@functools.cache
def _fallback(name: str, kind: str, fmt: str) -> Callable[[Person, random.Random], Any]:
    # The v4 generator knows the same fields under their v4 names (linkedin_*).
    v4_name = "linkedin_" + name[3:] if name.startswith("li_") else name
    return value_maker(v4_name, f"{kind}:{fmt}" if fmt else kind)


def record(
    schema: Mapping[str, Any],
    key: tuple[object, ...],
    *,
    p: Person | None = None,
    vary: bool = True,
    omit: frozenset[str] = frozenset(),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One record of ``schema`` (an object schema) for ``key``; ``p`` fixes who it is about."""
    rng = row_random(*key)
    who = p if p is not None else persona(rng)
    out: dict[str, Any] = {}
    for name, sub in (schema.get("properties") or {}).items():
        if name in omit or (vary and name not in KEY_FIELDS and rng.random() < MISSING_FIELD_CHANCE):
            continue
        out[name] = value(name, sub, who, rng)
    if extra:
        out.update(extra)
    return out


def person_from_url(url: str, seed: object) -> dict[str, Any]:
    """The persona a profile URL names: its last path segment is the handle."""
    handle = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    p = persona(row_random(seed, "v1-profile", handle))
    p["handle"] = handle
    return p


def company_from_url(url: str, seed: object) -> dict[str, Any]:
    path = url.split("?", 1)[0].rstrip("/").split("/")
    handle = path[path.index("company") + 1] if "company" in path[:-1] else path[-1]
    p = persona(row_random(seed, "v1-company", handle))
    if handle.isdigit():
        p["company_id"] = int(handle)
    else:
        p["company_handle"] = handle
    return p


def company_from_name(name: str, seed: object) -> dict[str, Any]:
    p = persona(row_random(seed, "v1-company-name", name.lower()))
    known = {c[0].lower(): c for c in COMPANIES}.get(name.lower())
    p["company"] = known[0] if known else name
    p["company_handle"] = slug(name) or "company"
    return p


def employee_2026_fields(p: Person, rng: random.Random) -> dict[str, Any]:
    return {
        "tenure_start": f"{rng.randrange(2012, 2026)}-{rng.randrange(1, 13):02d}",
        "tenure_months": rng.randrange(1, 160),
        "sn_company_id": str(p["company_id"]),
        "summary": sentence(rng),
    }
