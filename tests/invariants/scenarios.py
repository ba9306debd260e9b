"""Scenarios drawn from a seed: everything random in a scenario comes from ``random.Random(seed)``,
so a seed is a full reproduction. Pure data (JSON), no Airflow and no HTTP."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

# The answer a fault forces, by name. "-after": the API acts first, only its answer goes
# wrong (what a client cannot tell from a refusal); the others refuse before acting.
FAULTS: dict[str, dict[str, Any]] = {
    "429": {"status": 429, "retry_after": 0.05},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "504": {"status": 504},
    "520": {"status": 520},
    "524": {"status": 524},
    "500-after": {"status": 500, "after": True},
    "502-after": {"status": 502, "after": True},
    "520-after": {"status": 520, "after": True},
    "524-after": {"status": 524, "after": True},
    "timeout-after": {"delay": 0.8},  # processed, answered past the harness's 0.5 s read timeout
    "drop-before": {"drop": True},
    "drop-after": {"drop": True, "after": True},
    "truncated-after": {"malformed": True, "after": True},
}
MAY_HAVE_ACTED = {name for name, spec in FAULTS.items() if spec.get("after") or "delay" in spec}
# Answers whose X-Pagination-Next links cycle (page 2 -> 3 -> 2 ...) for CYCLE_PAGES pages, then
# the API's own answer: drawn on top of FAULTS (from the same seed, after everything else) so
# that adding it changed no other draw of a seed.
CYCLE = "cycle-pages"
CYCLE_PAGES = 6
MAX_SKEW_SECONDS = 600.0
LAUNCH_BAND = (0.7, 0.9)
LAUNCH_PATHS = {"v3": "/v3/workflows/*/schedule", "v4": "/v4/actions/linkedin-extract-people/run/async"}


@dataclass
class Fault:
    """``kind`` on the next ``times`` calls matching ``target`` (an input's marker, or a path)."""

    kind: str
    target: str
    times: int = 1


@dataclass
class Scenario:
    seed: int
    # "acting" (a live fan-out of messages), "watching" (the event trigger) or "launching" (one
    # task launching a v3 or v4 async run)
    kind: str
    faults: list[Fault] = field(default_factory=list)
    clock_skew: float = 0.0  # seconds Captain Data's clock is ahead (negative: behind)
    # acting
    inputs: int = 0
    mapped: bool = False
    output: str = "xcom"  # "xcom", "file" (one per instance) or "shared" (the docs' run_id template)
    retries: int = 0
    fail_after_execute: bool = False  # the try fails after execute() returned (XCom push, worker death)
    typo: bool = False  # a misspelt parameter: refused before any call
    # watching
    runs: list[float] = field(default_factory=list)  # seconds each v3 run runs
    failing: list[int] = field(default_factory=list)  # runs forced to fail (launching: too)
    states: list[str] | None = None
    two_triggerers: bool = False
    restart: bool = False
    behind_page: bool = False  # two long runs created before a full page (50) of short ones
    # Drawn after everything above (seeds keep what they drew before these existed):
    api: str = "v3"  # "v4": action runs (watching: the failing ones BLOCKED, then resumed)
    mode: str = "poll"  # "webhook" (v3): runs named by the webhooks a receiver stored
    undated: list[int] = field(default_factory=list)  # v3 runs listed without a finish time
    # The watchers (and the harness's reads) use a policy with a long read timeout on a loop
    # whose first request used the short one, and every run read is answered slowly.
    slow: bool = False
    unreadable: int | None = None  # a run whose reads by uid fail until the others are final
    # No asset state store (Airflow before 3.3): the watermark lives in the trigger's memory,
    # drawn only without a restart or a second triggerer (the state would not survive them).
    in_memory: bool = False
    # acting and launching: the worker dies at the DAG run's ``kill``-th API call (before the
    # request leaves, or ``kill_after`` the API answered it); then a user clears the finished
    # DAG run, with the same inputs or new ones (``clear``: "same" or "new"), and it runs again.
    kill: int | None = None
    kill_after: bool = False
    clear: str | None = None
    clear_after: float = 0.0  # seconds after the DAG run ended (every clock moves that far)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        data = json.loads(text)
        data["faults"] = [Fault(**f) for f in data["faults"]]
        return cls(**data)


def draw(seed: int) -> Scenario:
    rng = random.Random(seed)
    skew = rng.choice([0.0, rng.uniform(-MAX_SKEW_SECONDS, MAX_SKEW_SECONDS), -3.0])
    if rng.random() < 0.6:
        scenario = _acting(rng, seed, round(skew, 3))
    else:
        scenario = _watching(rng, seed, round(skew, 3))
    # Drawn after the rest, so a seed that does not launch is the scenario it was before; the
    # band leaves the seeds docs/guarantees.md names (0-7, 13, 16, 17, 22, 160) as they were.
    if LAUNCH_BAND[0] <= rng.random() < LAUNCH_BAND[1]:
        return _lifecycle(_launching(rng, seed, round(skew, 3)))
    # Drawn last for the same reason (after the launch band, which seeds found fixes).
    # Not with the slow API: its delay, added first, would answer the reads instead.
    if scenario.kind == "watching" and rng.random() < 0.3 and not scenario.slow:
        # The run started last: the runs started before it can be found final while its
        # reads fail (failing runs are started first).
        others = [i for i in range(len(scenario.runs)) if i not in scenario.failing]
        scenario.unreadable = (others or scenario.failing)[-1]
    if scenario.kind == "watching" and rng.random() < 0.7:
        scenario.in_memory = not (scenario.restart or scenario.two_triggerers)
    return _lifecycle(scenario) if scenario.kind == "acting" else scenario


def _lifecycle(scenario: Scenario) -> Scenario:
    """A worker's death and a user's clear, from a stream of their own: a seed draws everything
    else as it did before they existed."""
    rng = random.Random(f"lifecycle-{scenario.seed}")
    if rng.random() < 0.35:
        scenario.kill, scenario.kill_after = rng.randint(1, 6), rng.random() < 0.5
    if rng.random() < 0.35:
        scenario.clear = rng.choice(["same", "new"])
        scenario.clear_after = rng.choice([60.0, 3 * 3600.0])
    return scenario


def _launching(rng: random.Random, seed: int, skew: float) -> Scenario:
    api = rng.choice(["v3", "v4"])
    faults = [
        Fault(rng.choice(sorted(FAULTS)), LAUNCH_PATHS[api], rng.choice([1, 1, 2, 9]))
        for _ in range(rng.randint(0, 2))
    ]
    scenario = Scenario(
        seed=seed,
        kind="launching",
        faults=faults,
        clock_skew=skew,
        api=api,
        retries=rng.choice([0, 1, 2]),
        fail_after_execute=rng.random() < 0.3,
    )
    if scenario.fail_after_execute:
        scenario.retries = max(scenario.retries, 1)
    scenario.failing = list(range(rng.randint(0, scenario.retries)))  # runs that end badly
    return scenario


def _acting(rng: random.Random, seed: int, skew: float) -> Scenario:
    mapped = rng.random() < 0.35
    inputs = rng.randint(1, 4)
    markers = [f"person-{i:05d}" for i in range(inputs * (2 if mapped else 1))]
    faults = [
        Fault(rng.choice(sorted(FAULTS)), rng.choice(markers), rng.choice([1, 1, 2, 9]))
        for _ in range(rng.randint(0, 3))
    ]
    scenario = Scenario(
        seed=seed,
        kind="acting",
        faults=faults,
        clock_skew=skew,
        inputs=inputs,
        mapped=mapped,
        output=rng.choice(["xcom", "file", "shared"]),
        retries=rng.choice([0, 1, 2]),
        fail_after_execute=rng.random() < 0.3,
        typo=rng.random() < 0.1,
    )
    if scenario.fail_after_execute:
        scenario.retries = max(scenario.retries, 1)  # the retry is what the failure puts to the test
    if rng.random() < 0.3:
        scenario.faults.append(Fault(CYCLE, rng.choice(markers)))
    return scenario


def _watching(rng: random.Random, seed: int, skew: float) -> Scenario:
    count = rng.randint(1, 5)
    runs = [rng.choice([0.05, 0.3, 1.0]) for _ in range(count)]
    failing = sorted(rng.sample(range(count), rng.randint(0, min(2, count))))
    paths = ["/v3/workflows/*/jobs", "/v3/jobs/*"]
    kinds = sorted(k for k in FAULTS if not k.startswith("timeout"))
    faults = [
        Fault(rng.choice(kinds), rng.choice(paths), rng.choice([1, 2, 3])) for _ in range(rng.randint(0, 3))
    ]
    scenario = Scenario(
        seed=seed,
        kind="watching",
        faults=faults,
        clock_skew=skew,
        runs=runs,
        failing=failing,
        states=rng.choice([None, None, ["succeeded"], ["failed"]]),
        two_triggerers=rng.random() < 0.3,
        restart=rng.random() < 0.3,
        behind_page=rng.random() < 0.2,
    )
    pick = rng.random()
    if pick < 0.25:
        scenario.api, scenario.behind_page = "v4", False  # the page of 50 is v3's run list
    elif 0.45 < pick < 0.7:
        scenario.mode, scenario.behind_page = "webhook", False
    if scenario.api == "v3" and scenario.mode == "poll" and rng.random() < 0.3:
        scenario.undated = sorted(rng.sample(range(count), rng.randint(1, min(2, count))))
    scenario.slow = rng.random() < 0.15
    return scenario


def smaller(scenario: Scenario) -> list[Scenario]:
    """Candidates one step simpler (a fault, a lifecycle event or the skew removed), for shrinking."""
    out = []
    for i in range(len(scenario.faults)):
        out.append(_replace(scenario, faults=scenario.faults[:i] + scenario.faults[i + 1 :]))
    for name, plain in (
        ("fail_after_execute", False),
        ("kill", None),
        ("clear", None),
        ("two_triggerers", False),
        ("restart", False),
        ("typo", False),
        ("behind_page", False),
        ("slow", False),
        ("mode", "poll"),
        ("undated", []),
        ("failing", []),
        ("unreadable", None),
        ("clock_skew", 0.0),
        ("mapped", False),
        ("retries", 0),
    ):
        if getattr(scenario, name) != plain:
            out.append(_replace(scenario, **{name: plain}))
    return out


def _replace(scenario: Scenario, **changes: Any) -> Scenario:
    return Scenario.from_json(
        json.dumps(
            {
                **json.loads(scenario.to_json()),
                **{k: v for k, v in changes.items() if k != "faults"},
                "faults": [asdict(f) for f in changes.get("faults", scenario.faults)],
            }
        )
    )
