"""Griffe extension for the docs build: show Sphinx roles in docstrings as code.

The code's docstrings use Sphinx roles (``:class:`~pkg.mod.Name```, ``:meth:`name```,
``:mod:`pkg.mod```). mkdocstrings would print them literally; this turns each into a code
span with the name a reader expects (``~`` keeps the last component, as Sphinx does).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    name = target.rsplit(".", 1)[-1] if tilde else target
    return f"`{name}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(_replace, obj.docstring.value)
