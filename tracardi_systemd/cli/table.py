"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracardi_systemd.agent.policy import Decision, Observation
    from tracardi_systemd.observe.status import Status
    from tracardi_systemd.spec.catalog import Worker


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
         ",".join(w.required_settings) + (",license" if w.commercial else ""),
         ",".join(w.dependencies), "yes" if w.liveness else "-",
         "yes" if w.commercial else "no", "yes" if w.default else "no")
        for w in workers
    ]


def _runs(worker: Worker) -> str:
    if worker.schedule:
        return worker.schedule.cron
    return "once,first" if worker.kind == "run-once" else "always"


def format_table(status: Status) -> str:
    header = ("UNIT", "STATE", "CONTAINER", "LIVENESS", "WORK", "UPTIME", "RESTARTS", "MEMORY",
              "AGENT", "AGENT RESTARTS", "LAST REASON", "HEALTH")
    rows = [header] + [
        (w.unit, w.unit_state, w.container, w.liveness, w.work, _duration(w.uptime_seconds),
         str(w.restarts), _size(w.memory_bytes), w.agent_state or "-", str(w.agent_restarts),
         w.last_reason or "-", "; ".join(w.problems) or "ok")
        for w in status.workers
    ]
    verdict = "healthy" if status.healthy else "NOT healthy"
    docker = f"docker: {status.docker_problem}\n" if status.docker_problem else ""
    docker += f"upgrade: {status.upgrade}\n" if status.upgrade else ""
    others = "".join(f"{o.unit} {o.state} (last run: {o.result or '-'})"
                     f"{'' if o.healthy else ' NOT healthy'}\n" for o in status.others)
    return (f"{columns(rows)}\n{others}agent: tracardi-agent.service {status.agent}\n"
            f"{docker}{verdict}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}MiB"


def describe_cycle(observation: Observation, decision: Decision, dry_run: bool) -> str:
    """What `agent --once` prints: each unit as seen, then what was (or would be) done."""
    from tracardi_systemd.agent.policy import summary

    rows = [("UNIT", "SYSTEMD", "CONTAINER", "MEMORY", "AGENT STATE")]
    for unit, view in sorted(observation.workers.items()):
        past = decision.history.workers.get(unit)
        rows.append((
            unit, f"{view.unit.active_state}/{view.unit.sub_state}",
            view.container.status if view.container else "missing",
            f"{view.memory / 2**20:.0f}MiB" if view.memory else "-",
            past.state.value if past else "-",
        ))
    lines = [columns(rows), summary(observation, decision.history)]
    verb = "would" if dry_run else "did"
    lines += [f"{verb} {a.kind.value} {a.target}: {a.reason}" for a in decision.actions]
    if not decision.actions:
        lines.append("nothing to do")
    return "\n".join(lines)
