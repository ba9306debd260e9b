"""What the emulator serves, as ``captaindata-emulator`` prints it at start: the v3 workflows
(uid, name, a sample ``inputs`` list) and sample inputs of a few v4 actions, so a first DAG
can be written against it without reading its source."""

from __future__ import annotations

import json

from airflow_provider_captaindata.emulator.v3 import seed_workflows

# A value each input field accepts (checked against the catalog's patterns by a test).
SAMPLE_VALUES = {
    "linkedin_profile_url": "https://www.linkedin.com/in/ada-lovelace",
    "linkedin_company_url": "https://www.linkedin.com/company/captain-data",
    "linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=data%20engineer",
    "google_maps_place_url": "https://www.google.com/maps/place/Eiffel+Tower",
}
# Read-only actions (no effect on LinkedIn): safe to try on the real API too.
SAMPLE_ACTIONS = (
    "linkedin-extract-people",
    "linkedin-search-people",
    "linkedin-extract-company",
    "googlemaps-extract-place",
)


def sample_input(fields: list[str]) -> dict[str, str]:
    return {name: SAMPLE_VALUES[name] for name in fields}


def workflow_lines(seed: int) -> list[str]:
    """One line per v3 workflow: its uid, name and a sample ``inputs`` (its first step's field)."""
    lines = []
    for workflow in seed_workflows(seed):
        inputs = json.dumps([sample_input([workflow.steps[0].input_field])])
        steps = "" if len(workflow.steps) == 1 else f" ({len(workflow.steps)} steps: pass steps)"
        lines.append(f"  {workflow.uid}  {workflow.name}{steps}\n      inputs={inputs}")
    return lines


def action_lines() -> list[str]:
    """A sample ``input`` for a few v4 actions (the emulator serves every action of the catalog)."""
    from airflow_provider_captaindata.client.catalog import get_action

    lines = []
    for name in SAMPLE_ACTIONS:
        spec = get_action(name)
        if spec is not None:  # every sample is in the catalog (a test says so)
            lines.append(f"  {name}  input={json.dumps(sample_input(list(spec.input_fields)))}")
    return lines
