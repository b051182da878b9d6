"""The result rows of the benchmarks as one plain-text (and Markdown) table."""

from __future__ import annotations

from typing import Any


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def cells(row: dict[str, Any]) -> list[str]:
    return [
        row["item"],
        row["measure"],
        f"{_number(row['value'])} {row['unit']}" if row["value"] is not None else "-",
        row["baseline"],
        _number(row["ratio"]),
        row["target"],
        _met(row["met"]),
        row["note"],
    ]


HEADER = ["item", "measure", "value", "baseline", "ratio", "target", "met", "note"]


def render(rows: list[dict[str, Any]]) -> str:
    table = [HEADER, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = []
    for n, line in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |")
    return "\n".join(lines)
