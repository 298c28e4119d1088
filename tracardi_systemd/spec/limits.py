"""Per-worker numbers given as `WORKER=N` (replicas) or `[WORKER=]MIB` (memory limits):
one parser, one rule for both, used by the command line, rendering and the agent."""

from __future__ import annotations

from collections.abc import Iterable

from tracardi_systemd.names import worker_name

DEFAULT_MEMORY_LIMIT_MIB = 2048
MIN_MEMORY_LIMIT_MIB = 16
MIB = 2**20


class LimitError(ValueError):
    """A `WORKER=N` value that is malformed or names no selected worker."""


def per_worker(option: str, values: Iterable[str], known: Iterable[str],
               default_allowed: bool, low: int, high: int | None = None
               ) -> tuple[int | None, dict[str, int]]:
    """(the value without a worker name, {worker: value}) of `[WORKER=]N` items."""
    known = set(known)
    default, by_worker = None, {}
    for item in values:
        name, sep, number = item.rpartition("=")
        if not number.isdigit() or not low <= int(number) <= (high or int(number)):
            bound = f"{low} to {high}" if high else f"at least {low}"
            raise LimitError(f"{option} {item!r}: the number must be {bound}")
        if not sep:
            if not default_allowed:
                raise LimitError(f"{option} {item!r}: write WORKER=N")
            default = int(number)
            continue
        worker = worker_name(name)
        if worker not in known:
            raise LimitError(f"{option} {item!r}: {name!r} is not a selected worker "
                             f"(selected: {', '.join(sorted(known))})")
        by_worker[worker] = int(number)
    return default, by_worker


def parse_replicas(values: Iterable[str], known: Iterable[str]) -> dict[str, int]:
    return per_worker("--replicas", values, known, default_allowed=False, low=1, high=1000)[1]


def parse_memory_limits(values: Iterable[str], known: Iterable[str]
                        ) -> tuple[int, dict[str, int]]:
    """(default limit in bytes, {worker: bytes})."""
    default, by_worker = per_worker("--memory-limit", values, known, default_allowed=True,
                                    low=MIN_MEMORY_LIMIT_MIB)
    return ((default or DEFAULT_MEMORY_LIMIT_MIB) * MIB,
            {worker: mib * MIB for worker, mib in by_worker.items()})
