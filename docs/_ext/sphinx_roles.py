"""Griffe extension for the docs build: make the code's Sphinx-style docstrings render well.

* Sphinx roles (``:class:`~pkg.mod.Name```, ``:meth:`name```, ``:mod:`pkg.mod```) become
  code spans with the name a reader expects (``~`` keeps the last component, as Sphinx does);
  mkdocstrings would otherwise print them literally.
* Prose after the ``:param ...:`` field list (e.g. "Other parameters are those of ...") is
  moved before the list: griffe's Sphinx parser would glue it to the last parameter.

Only the rendered docs change; the code is not touched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj):`(~?)([^`]+)`")
_FIELD = re.compile(r"^:(param|type|raises?|returns?|rtype|var|ivar|cvar)\b")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    name = target.rsplit(".", 1)[-1] if tilde else target
    return f"`{name}`"


def _prose_after_fields_first(text: str) -> str:
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if _FIELD.match(line)), None)
    if first is None:
        return text
    # The field list ends at the first blank line followed by an unindented, non-field line.
    for i in range(first + 1, len(lines) - 1):
        following = lines[i + 1]
        if (
            not lines[i].strip()
            and following.strip()
            and not following.startswith((" ", "\t"))
            and not _FIELD.match(following)
        ):
            before, fields, after = lines[:first], lines[first:i], lines[i + 1 :]
            return "\n".join([*before, *after, "", *fields]).strip("\n")
    return text


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        value = docstring.value
        if ":`" in value:
            value = _ROLE.sub(_replace, value)
        docstring.value = _prose_after_fields_first(value)
