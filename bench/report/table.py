"""Plain-text and Markdown tables for command output."""

from __future__ import annotations

from collections.abc import Sequence


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[dict[str, object]], markdown: bool = False) -> str:
    """Rows of equal keys as an aligned table (a Markdown table when `markdown`)."""
    if not rows:
        return "(no rows)"
    headers = list(rows[0])
    cells = [[_cell(row.get(h, "")) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    sep = " | " if markdown else "  "
    lines = [sep.join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append(sep.join(("-" * w) for w in widths))
    lines += [sep.join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    if markdown:
        lines = [f"| {line} |" for line in lines]
    return "\n".join(lines)
