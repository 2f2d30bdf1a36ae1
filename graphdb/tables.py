"""Printing rows of records (query results, zoo metrics) as a table, CSV or JSON.

Every command that prints records goes through :func:`render`, so ``--format`` means the same
everywhere. Lives in the bottom layer so ``ingest`` and ``queries`` can both use it.
"""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Any


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return " -> ".join(map(str, value)) if all(isinstance(v, str) for v in value) else json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def render(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str], fmt: Format, title: str = "") -> None:
    """Print records to stdout as a rich table, CSV or JSON lines-free JSON array."""
    if fmt is Format.JSON:
        json.dump(rows, sys.stdout, default=str, indent=1)
        sys.stdout.write("\n")
    elif fmt is Format.CSV:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[_cell(r.get(c)) for c in columns] for r in rows])
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title or None, title_justify="left")
        for c in columns:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(Text(_cell(r.get(c))) for c in columns))  # no markup in data
        console = Console(soft_wrap=False)
        if not console.is_terminal:  # piped or captured: don't fold keys into 80 columns
            console = Console(soft_wrap=False, width=240)
        console.print(table)
