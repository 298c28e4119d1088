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


def catalog_rows(workers: Iterable[Worker], tag: str) -> list[Sequence[str]]:
    """`workers`' table: each entry's unit, when it runs, its image, the settings and
    services it needs, whether it is commercial and selected without --worker."""
    header: list[Sequence[str]] = [
        ("UNIT", "RUNS", "IMAGE", "SETTINGS", "DEPENDS ON", "LIVENESS", "COMMERCIAL",
         "DEFAULT")]
    return header + [
        (w.unit, _runs(w), f"{w.image}:{tag}",
         ",".join(w.settings) + (",license" if w.commercial else ""),
         ",".join(w.dependencies), "yes" if w.liveness else "-",
         "yes" if w.commercial else "no", "yes" if w.default else "no")
        for w in workers
    ]


def _runs(worker: Worker) -> str:
    if worker.schedule:
        return worker.schedule.cron
    return "once,first" if worker.kind == "run-once" else "always"
