"""Markdown tables that read well in a terminal, in the report and in the MLflow UI."""

from __future__ import annotations


def md_table(header: list[str], rows: list[list[str]], align: str) -> str:
    """GitHub-markdown table with padded columns; `align` holds "l" or "r" per column."""
    widths = [max(3, len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "| "
        + " | ".join(
            ("-" * (w - 1) + ":") if a == "r" else "-" * w
            for w, a in zip(widths, align, strict=True)
        )
        + " |"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
