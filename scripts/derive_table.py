"""The command line that ``derive_v1_api.py`` and ``derive_v4_queries.py`` share: read an
OpenAPI document, derive a JSON table from it, and write it, or with ``--check`` exit 1 when
the committed table differs (for CI)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def derive_table_main(
    argv: list[str] | None,
    *,
    description: str,
    default_document: Path,
    default_out: Path,
    derive: Callable[[dict[str, Any]], dict[str, Any]],
    script: str,
) -> int:
    """``derive`` maps the parsed document to the table's entries (``operations`` among them)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("document", nargs="?", type=Path, default=default_document)
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--check", action="store_true", help="fail if the committed file is out of date")
    args = parser.parse_args(argv)
    raw = args.document.read_bytes()
    table = {
        # A 16-digit prefix, as in the catalog: it identifies the document and never looks
        # like an API key.
        "source": {"document": args.document.name, "sha256_prefix": hashlib.sha256(raw).hexdigest()[:16]},
        **derive(json.loads(raw)),
    }
    text = json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run {script}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(table['operations'])} operations)")
    return 0
