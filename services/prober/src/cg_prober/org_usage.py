"""An hour of organization usage as usage events: ids, attributes, late additions, and how an hour a previous
version recorded goes on exactly once.

OpenAI splits an hour per (model, project, API key, user). An event's id is
`<bucket start>:<model>:<project>:<api key id>:<user>` ("-" where OpenAI reports none); its group is the same without
the user: `<bucket start>:<model>:<project>:<api key id>`, which is the id the previous version (grouping by model,
project and key only) gave the whole group. The prober's record keeps what was emitted under both the event's id and
its group's, so that:

- a group whose record holds as much as its users' entries add up to goes on per user: what each result holds beyond
  its own entry goes out under its own id, with its user;
- a group whose record holds more (usage that went out without users: events of the previous version, read after an
  upgrade, or sent by a previous-version prober still running during a rolling update) goes on as a whole: only what
  the group's results add up to beyond the group's entry goes out, under the group's id, without a user. Whatever part
  of it a user had may already be counted in what went out without users, so nothing is sent per user there.

A previous version reading a record this one wrote finds its ids (the groups) with everything emitted for them, so a
rollback sends nothing twice either.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cg_common.logging import get_logger
from cg_common.organization import ORGANIZATION_USAGE_SUBJECT
from cg_common.usage_event import USAGE_EVENT_TYPE, InvalidEventError
from cg_common.usage_publisher import prepare_usage
from cg_prober.org_state import NO_USAGE, UsageFigures

log = get_logger(__name__)

MAX_ATTRIBUTE_CHARS = 256  # a longer attribute value makes the event invalid: a project's name is cut to it
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,199}$")

Event = dict[str, Any]


def new_events(
    source: str,
    hour: int,
    results: list[Any],
    emitted: Mapping[str, UsageFigures],
    project_names: Mapping[str, str],
) -> list[tuple[Event, str]]:
    """The events an hour's results call for, each with its group, given what was emitted for the hour before."""
    groups: dict[str, dict[str, Event]] = defaultdict(dict)
    for result in results:
        found = _usage_event(source, hour, result, project_names)
        if found is not None:
            group, event = found
            members = groups[group]
            members[event["id"]] = _merged(members.get(event["id"]), event)
    events = [
        (event, group)
        for group, members in groups.items()
        for event in _group_events(group, list(members.values()), emitted)
    ]
    return [(event, group) for event, group in events if _valid(event)]


def _group_events(group: str, members: list[Event], emitted: Mapping[str, UsageFigures]) -> list[Event]:
    """A group's events: per user while everything emitted for the group was per user, else the group's whole."""
    per_user = sum((emitted.get(member["id"], NO_USAGE) for member in members), NO_USAGE)
    group_emitted = emitted.get(group, NO_USAGE)
    if group_emitted == per_user:
        found = (
            late_addition(member, emitted[member["id"]]) if member["id"] in emitted else member for member in members
        )
        return [event for event in found if event is not None]
    addition = late_addition(_whole(group, members), group_emitted)
    return [addition] if addition is not None else []


def _usage_event(source: str, start: int, result: Any, project_names: Mapping[str, str]) -> tuple[str, Event] | None:
    """One result's group and event; None for what holds no usage."""
    if not isinstance(result, dict) or result.get("object") != "organization.usage.completions.result":
        return None
    if not result.get("num_model_requests") and not result.get("input_tokens") and not result.get("output_tokens"):
        return None
    model = result.get("model")
    model = model if isinstance(model, str) and _MODEL.match(model) else "unknown"
    project, openai_key_id, user = (_reported(result.get(name)) for name in ("project_id", "api_key_id", "user_id"))
    group = f"{start}:{model}:{project or '-'}:{openai_key_id or '-'}"
    name = project_names.get(project or "")
    attributes: dict[str, str] = {"bucket_width": "1h"}
    attributes.update(
        (attribute, value)
        for attribute, value in (
            ("project", project),
            ("project_name", name[:MAX_ATTRIBUTE_CHARS] if name else None),
            ("user", user),
            ("openai_api_key_id", openai_key_id),
        )
        if value
    )
    event = {
        "specversion": "1.0",
        "id": f"{group}:{user or '-'}",
        "source": source,
        "type": USAGE_EVENT_TYPE,
        "time": datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"provider": "openai", "model": model, "attributes": attributes},
    }
    figures = UsageFigures(
        int(result.get("num_model_requests") or 0),
        int(result.get("input_tokens") or 0),
        int(result.get("input_cached_tokens") or 0),
        int(result.get("output_tokens") or 0),
    )
    return group, with_figures(event, figures)


def _reported(value: Any) -> str | None:
    """A grouped field's value; None where OpenAI reports none (`null` for what was not grouped by, or not known)."""
    return str(value) if value not in (None, "") else None


def _merged(earlier: Event | None, event: Event) -> Event:
    """Two results under one id (two unusable model names are both `unknown`) go out as one event, not one lost."""
    if earlier is None:
        return event
    return with_figures(event, UsageFigures.of_event(earlier) + UsageFigures.of_event(event))


def _whole(group: str, members: list[Event]) -> Event:
    """The group's usage as one event under the group's id, as the previous version sent it: without a user."""
    first = members[0]
    total = sum((UsageFigures.of_event(member) for member in members), NO_USAGE)
    attributes = {name: value for name, value in first["data"]["attributes"].items() if name != "user"}
    whole = with_figures(first, total)
    return {**whole, "id": group, "data": {**whole["data"], "attributes": attributes}}


def late_addition(event: Event, emitted: UsageFigures) -> Event | None:
    """The part of a bucket's usage not emitted yet, as an event of its own; None when there is none. A bucket
    OpenAI lowered after it was emitted keeps the emitted figures: usage cannot be negative."""
    added = UsageFigures.of_event(event) - emitted
    if added.negative:
        log.warning("organization usage lowered after it was emitted; the emitted figures stay", event_id=event["id"])
        return None
    if added == NO_USAGE:
        return None
    after = (emitted.requests, emitted.input_tokens, emitted.cached_input_tokens, emitted.output_tokens)
    return {**with_figures(event, added), "id": f"{event['id']}|after:{':'.join(str(figure) for figure in after)}"}


def with_figures(event: Event, figures: UsageFigures) -> Event:
    data = {
        **event["data"],
        "requests": figures.requests,
        "input_tokens": figures.input_tokens,
        "cached_input_tokens": figures.cached_input_tokens,
        "output_tokens": figures.output_tokens,
    }
    return {**event, "data": data}


def _valid(event: Event) -> bool:
    """Whether the ledger would take it: what it would refuse is skipped here, logged."""
    try:
        prepare_usage(event, subject=ORGANIZATION_USAGE_SUBJECT)
    except InvalidEventError as error:
        log.warning("organization usage result skipped", reason=str(error)[:200])
        return False
    return True
