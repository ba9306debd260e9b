"""Fake results that look real (names, LinkedIn URLs, companies) and are deterministic.

Every row comes from its own ``random.Random`` seeded with the emulator seed and the row's
key (run and index), so a row can be generated again on demand: pages of 100,000-row runs
are never stored, and the same request gives the same rows.
"""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST_NAMES = (
    "Alice", "Bastien", "Camille", "Diego", "Emma", "Farid", "Giulia", "Hugo", "Ines", "Jonas",
    "Karim", "Léa", "Mateo", "Nora", "Oscar", "Priya", "Quentin", "Rosa", "Samir", "Tessa",
    "Ugo", "Valentina", "William", "Xavier", "Yasmine", "Zoé", "Amelia", "Benoît", "Chloé", "Dmitri",
    "Elena", "Felix", "Grace", "Hannah", "Ivan", "Julia", "Kenji", "Lucas", "Maya", "Nicolas",
)  # fmt: skip
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Garcia", "Rossi", "Müller", "Smith", "Johnson", "Kowalski",
    "Nguyen", "Silva", "Tanaka", "Haddad", "Laurent", "Moreau", "Fischer", "Novak", "Costa",
    "Schmidt", "Lopez", "Petit", "Roux", "Fontaine", "Chevalier", "Andersen", "Okafor", "Kim",
    "Patel", "Rahman", "Weber",
)  # fmt: skip
COMPANIES = (
    ("Acme Analytics", "Software Development", "acme-analytics.io"),
    ("Blue Harbor Logistics", "Transportation, Logistics and Storage", "blueharbor.com"),
    ("Cobalt Health", "Hospitals and Health Care", "cobalthealth.org"),
    ("Datanest", "IT Services and IT Consulting", "datanest.fr"),
    ("Evergreen Energy", "Renewable Energy", "evergreen-energy.eu"),
    ("Foxglove Media", "Online Audio and Video Media", "foxglove.media"),
    ("Granite Capital", "Venture Capital and Private Equity", "granitecap.com"),
    ("Helio Robotics", "Automation Machinery Manufacturing", "heliorobotics.ai"),
    ("Indigo Retail", "Retail", "indigo-retail.com"),
    ("Juniper Labs", "Biotechnology Research", "juniperlabs.bio"),
    ("Kestrel Security", "Computer and Network Security", "kestrelsec.com"),
    ("Lumen Education", "E-Learning Providers", "lumen.education"),
    ("Meridian Foods", "Food and Beverage Manufacturing", "meridianfoods.com"),
    ("Northwind Travel", "Travel Arrangements", "northwind.travel"),
    ("Orbit Payments", "Financial Services", "orbitpay.com"),
    ("Pinecone Studio", "Design Services", "pinecone.studio"),
)
TITLES = (
    "Data Engineer", "Head of Growth", "Software Engineer", "Product Manager", "Sales Director",
    "Marketing Manager", "Chief Technology Officer", "Account Executive", "Data Scientist",
    "Customer Success Manager", "VP Engineering", "Recruiter", "Founder & CEO", "Operations Lead",
    "Business Developer", "UX Designer",
)  # fmt: skip
PLACES = (
    ("Paris", "France"), ("Lyon", "France"), ("Berlin", "Germany"), ("Madrid", "Spain"),
    ("London", "United Kingdom"), ("New York", "United States"), ("San Francisco", "United States"),
    ("Amsterdam", "Netherlands"), ("Lisbon", "Portugal"), ("Milan", "Italy"), ("Montreal", "Canada"),
    ("Singapore", "Singapore"),
)  # fmt: skip
SKILLS = ("Python", "SQL", "Airflow", "Negotiation", "Leadership", "Kubernetes", "Salesforce", "Figma")
SCHOOLS = ("HEC Paris", "ETH Zürich", "Politecnico di Milano", "University of Toronto", "INSA Lyon")
WORDS = (
    "data", "pipeline", "growth", "team", "launch", "customers", "platform", "insights", "scale",
    "automation", "partners", "quarter", "hiring", "product", "market", "results",
)  # fmt: skip
EPOCH = datetime(2025, 6, 1, tzinfo=UTC)


def row_random(*key: object) -> random.Random:
    return random.Random(":".join(map(str, key)))


_ACCENTS = str.maketrans("éèêëàâäîïôöûüçñ", "eeeeaaaiioouucn")


@functools.cache
def slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower().translate(_ACCENTS))
    return "-".join(part for part in cleaned.split("-") if part)


def persona(rng: random.Random) -> dict[str, Any]:
    """One consistent fake person at a fake company."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company, industry, domain = rng.choice(COMPANIES)
    city, country = rng.choice(PLACES)
    title = rng.choice(TITLES)
    return {
        "first_name": first,
        "last_name": last,
        "full_name": f"{first} {last}",
        "handle": f"{slug(first)}-{slug(last)}-{rng.getrandbits(32):08x}",
        "profile_id": rng.randrange(10**8, 10**9),
        "sn_id": f"ACwAA{rng.getrandbits(100):025X}",
        "title": title,
        "headline": f"{title} at {company}",
        "company": company,
        "company_handle": slug(company),
        "company_id": rng.randrange(10**5, 10**8),
        "industry": industry,
        "domain": domain,
        "city": city,
        "country": country,
        "school": rng.choice(SCHOOLS),
        "post_id": rng.randrange(7 * 10**18, 8 * 10**18),
        "minutes_ago": rng.randrange(0, 365 * 24 * 60),
    }


def sentence(rng: random.Random, words: int = 8) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _moment(p: Mapping[str, Any]) -> datetime:
    return EPOCH - timedelta(minutes=p["minutes_ago"])


_TEXT_FIELDS = {
    "description", "summary", "content", "content_text", "comment", "comment_text", "message",
    "job_description", "short_description", "tagline", "review_comment", "review_title", "answer",
    "last_reply", "reply", "translated_content", "translated_answer", "event_information",
}  # fmt: skip
_PERSON = {
    "first_name": "first_name",
    "last_name": "last_name",
    "full_name": "full_name",
    "profile_full_name": "full_name",
    "author_name": "full_name",
    "reviewer_name": "full_name",
    "job_title": "title",
    "current_title": "title",
    "title": "title",
    "target_job_title": "title",
    "headline": "headline",
    "company_name": "company",
    "current_company": "company",
    "original_company_name": "company",
    "name": "company",
    "industry": "industry",
    "city": "city",
    "country": "country",
    "profile_country": "country",
    "domain": "domain",
    "source_domain": "domain",
    "linkedin_profile_handle": "handle",
    "handle": "handle",
    "linkedin_company_handle": "company_handle",
    "school_name": "school",
}
Maker = Callable[[Mapping[str, Any], random.Random], Any]
LI = "https://www.linkedin.com"


def _url_maker(name: str) -> Maker:
    """How to make a URL for field ``name``: decided once per field name (rows are many)."""
    if "image" in name or "picture" in name or name in ("logo_url", "author_img"):
        return lambda p, rng: (
            f"https://media.licdn.com/dms/image/{rng.getrandbits(64):016x}/profile-displayphoto-shrink_400_400"
        )
    if name.endswith("search_url") and "sales_navigator" not in name:
        kind = "content" if "post" in name or "content" in name else "people"
        return lambda p, rng: f"{LI}/search/results/{kind}/?keywords={slug(p['title'])}"
    if name in ("linkedin_profile_url", "linkedin_url") or name.endswith("profile_urls"):
        return lambda p, rng: f"{LI}/in/{p['handle']}"
    if "sales_navigator" in name:
        if "company" in name:
            return lambda p, rng: f"{LI}/sales/company/{p['company_id']}"
        if "search" in name or "list" in name:
            return lambda p, rng: f"{LI}/sales/search/people?savedSearchId={p['company_id']}"
        return lambda p, rng: f"{LI}/sales/lead/{p['sn_id']},NAME_SEARCH"
    if "company" in name:
        return lambda p, rng: f"{LI}/company/{p['company_handle']}"
    if "school" in name:
        return lambda p, rng: f"{LI}/school/{slug(p['school'])}"
    if "post" in name or "comment" in name or "reaction" in name:
        return lambda p, rng: f"{LI}/feed/update/urn:li:activity:{p['post_id']}"
    if "job" in name:
        return lambda p, rng: f"{LI}/jobs/view/{p['profile_id'] // 100}"
    if "event" in name and "external" not in name:
        return lambda p, rng: f"{LI}/events/{p['post_id'] // 1000}"
    if "group" in name:
        return lambda p, rng: f"{LI}/groups/{p['company_id']}"
    if "thread" in name:
        return lambda p, rng: f"{LI}/messaging/thread/2-{base64.b64encode(rng.randbytes(24)).decode()}"
    if "google_maps" in name:
        return lambda p, rng: f"https://www.google.com/maps/place/{slug(p['company'])}/@48.85,2.35,17z"
    if "tripadvisor" in name:
        return lambda p, rng: (
            f"https://www.tripadvisor.com/Hotel_Review-g187147-d{p['company_id']}-Reviews.html"
        )
    if "crunchbase" in name:
        return lambda p, rng: f"https://www.crunchbase.com/organization/{p['company_handle']}"
    path = slug(name.removesuffix("_url"))
    return lambda p, rng: f"https://www.{p['domain']}/{path}/{p['company_id']}"


def _string_maker(name: str, fmt: str) -> Maker:
    if name in _PERSON:
        key = _PERSON[name]
        return lambda p, rng: p[key]
    if fmt in ("uri", "url") or name.endswith(("_url", "_link")) or name in ("website", "twitter"):
        return _url_maker(name)
    if fmt == "email" or name == "email":
        return lambda p, rng: f"{slug(p['first_name'])}.{slug(p['last_name'])}@{p['domain']}"
    if fmt == "date-time" or name.endswith(("_at", "_time", "_datetime")):
        return lambda p, rng: _moment(p).isoformat().replace("+00:00", "Z")
    if fmt == "date" or name.endswith("_date") or name == "date":
        return lambda p, rng: _moment(p).date().isoformat()
    if name in ("location", "job_location", "geographic_area", "headquarters", "address"):
        return lambda p, rng: f"{p['city']}, {p['country']}"
    if name == "phone" or name.endswith("_phone"):
        return lambda p, rng: (
            f"+33 6 {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} 00"
        )
    if name == "sales_navigator_profile_id":
        return lambda p, rng: p["sn_id"]
    if name.endswith(("_id", "_urn")):
        if "profile" in name:
            return lambda p, rng: str(p["profile_id"])
        return lambda p, rng: str(rng.randrange(10**6, 10**10))
    if "degree" in name:
        return lambda p, rng: rng.choice(("1st", "2nd", "3rd"))
    if name in _TEXT_FIELDS:
        return lambda p, rng: sentence(rng)
    return lambda p, rng: sentence(rng, 3).rstrip(".")


def _number_maker(name: str) -> Maker:
    if name == "linkedin_profile_id":
        return lambda p, rng: p["profile_id"]
    if name.endswith("company_id"):
        return lambda p, rng: p["company_id"]
    if "degree" in name:
        return lambda p, rng: rng.choice((1, 2, 3))
    if name.endswith("_id"):
        return lambda p, rng: rng.randrange(10**6, 10**10)
    if name in ("rating", "grade", "stars", "review_rating", "ranking"):
        return lambda p, rng: round(rng.uniform(3.0, 5.0), 1)
    return lambda p, rng: rng.randrange(0, 500)


def _array_maker(name: str) -> Maker:
    if name.endswith("_urls"):
        url = _url_maker(name)
        return lambda p, rng: [url(persona(rng), rng) for _ in range(rng.randrange(0, 3))]
    if name == "skills":
        return lambda p, rng: [{"name": s} for s in rng.sample(SKILLS, 3)]
    if name == "languages":
        return lambda p, rng: rng.sample(["English", "French", "Spanish", "German"], 2)
    return lambda p, rng: []


@functools.cache
def value_maker(name: str, kind: str) -> Maker:
    """How to make a plausible value for output field ``name`` of type ``kind``
    (``string:uri`` style): decided once per field, then called for every row."""
    base, _, fmt = kind.partition(":")
    if base == "string":
        return _string_maker(name, fmt)
    if base in {"integer", "number"}:
        return _number_maker(name)
    if base == "boolean":
        return lambda p, rng: rng.random() < 0.3
    if base == "array":
        return _array_maker(name)
    if base == "object":
        return lambda p, rng: {}
    return lambda p, rng: None


def action_row(
    output_fields: Mapping[str, str],
    key: Sequence[object],
    input: Mapping[str, Any] | None,
    *,
    echo_input: bool,
) -> dict[str, Any]:
    """One v4 result row shaped like the action's output schema, plus the input's custom_data.

    ``echo_input``: fields the input also has (the profile URL of an extract action) take
    the input's value, so the result is about what was asked for."""
    rng = row_random(*key)
    p = persona(rng)
    row = {name: value_maker(name, kind)(p, rng) for name, kind in output_fields.items()}
    if input:
        if echo_input:
            for name in output_fields:
                if name in input and name != "custom_data":
                    row[name] = input[name]
        if input.get("custom_data") is not None:
            row["custom_data"] = input["custom_data"]
    return row


V3_PEOPLE_FIELDS = {
    "first_name": "string",
    "last_name": "string",
    "full_name": "string",
    "headline": "string",
    "job_title": "string",
    "company_name": "string",
    "linkedin_company_url": "string:uri",
    "location": "string",
    "industry": "string",
    "linkedin_profile_url": "string:uri",
    "linkedin_profile_id": "integer",
    "connection_degree": "string",
}
V3_COMPANY_FIELDS = {
    "company_name": "string",
    "linkedin_company_url": "string:uri",
    "linkedin_company_id": "integer",
    "industry": "string",
    "website": "string:uri",
    "headquarters": "string",
    "employees_range": "string",
    "description": "string",
    "followers_count": "integer",
}


def v3_row(
    fields: Mapping[str, str],
    key: Sequence[object],
    input: Mapping[str, Any],
    input_index: int,
    row_index: int,
) -> dict[str, Any]:
    """One v3 result row: the step's output columns, the input's fields, and where it came from
    (``input_index``, ``row_index``: every row of a run has a distinct ``row_index``)."""
    rng = row_random(*key, row_index)
    p = persona(rng)
    row: dict[str, Any] = {name: value_maker(name, kind)(p, rng) for name, kind in fields.items()}
    if "employees_range" in row:
        row["employees_range"] = rng.choice(("11-50", "51-200", "201-500", "501-1000", "1001-5000"))
    for name, value in input.items():
        if name != "meta":
            row[name] = value
    if "meta" in input:
        row["meta"] = input["meta"]
    row["input_index"] = input_index
    row["row_index"] = row_index
    return row
