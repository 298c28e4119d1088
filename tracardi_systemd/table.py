"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracardi_systemd.catalog import Worker


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def catalog_rows(workers: Iterable[Worker]) -> list[Sequence[str]]:
    """`workers`' table: unit, image, the settings each needs, commercial or not."""
    header: list[Sequence[str]] = [
        ("UNIT", "IMAGE", "SETTINGS", "DEPENDS ON", "LIVENESS", "COMMERCIAL")]
    return header + [
        (w.unit_base, w.image, ",".join(w.settings) + (",license" if w.commercial else ""),
         ",".join(w.dependencies), "yes" if w.liveness else "-",
         "yes" if w.commercial else "no")
        for w in workers
    ]
