"""How an install reuses the options of the last one, recorded in its manifest."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tracardi_systemd import names
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.spec.catalog import CatalogError, select_workers

REUSED = ("runtime", "tracardi_version", "workers", "image_tag", "network", "replicas",
          "worker_env", "installed_env_file", "docker", "stop_timeout", "agent_interval",
          "memory_limits", "liveness", "liveness_interval", "tool", "metrics_dir", "on_failure")

# Options that name a release's workers or images: they are not carried to another release.
VERSION_BOUND = ("workers", "image_tag", "replicas", "memory_limits")
# Options whose WORKER=... entries name a worker: an entry for one no longer selected is
# left behind (an earlier --replicas scheduler=1 must not break `install --worker update`).
PER_WORKER = ("replicas", "memory_limits")


@dataclass
class Reuse:
    """What an install took from the last one, and what it left behind and why."""

    taken: dict[str, Any] = field(default_factory=dict)  # option -> value, in REUSED order
    dropped: list[tuple[str, Any, str]] = field(default_factory=list)  # option, value, why
    notes: list[str] = field(default_factory=list)  # anything else the operator is told


def recorded(params: dict[str, Any]) -> dict[str, Any]:
    """The options an install records in its manifest, JSON-ready."""
    return {name: list(params[name]) if isinstance(params[name], tuple) else params[name]
            for name in REUSED if params.get(name) not in (None, (), {})}


def reuse_previous(params: dict[str, Any], given: Collection[str], previous: Manifest | None,
                   packaged_program: str | None = None) -> Reuse:
    """Fill the options not `given` on this command line from the last install. Left
    behind: on a move to another release, the options that name the old one's workers or
    image tag; entries of per-worker options for workers no longer selected; a recorded
    agent program once `packaged_program` (the packaged one, present) can run the agent."""
    reuse = Reuse()
    if previous is None:
        return reuse
    old_version = previous.tracardi_version
    if "tracardi_version" not in given and old_version:
        params["tracardi_version"] = reuse.taken["tracardi_version"] = old_version
    moving = params["tracardi_version"] != old_version
    for name in REUSED:
        if name == "tracardi_version" or name in given or name not in previous.options:
            continue
        value = previous.options[name]
        value = tuple(value) if isinstance(value, list) else value
        if moving and name in VERSION_BOUND:
            reuse.dropped.append((name, value, f"Tracardi {old_version}, now "
                                  f"{params['tracardi_version']}"))
        elif name == "tool" and packaged_program and value != packaged_program:
            reuse.dropped.append((name, value, f"the packaged {packaged_program} is installed "
                                  "and runs the agent"))
        else:
            params[name] = reuse.taken[name] = value
    record = previous.in_flight
    if record is not None and "image_tag" not in given and not moving:
        # A killed upgrade is rolled back, not finished: its new tag never passed the gate
        # on every worker (docs/design.md).
        params["image_tag"] = reuse.taken["image_tag"] = record.from_tag
        reuse.notes.append(f"from {record.describe()}, which was interrupted: "
                           f"--image-tag={record.from_tag}, the tag every worker ran before it")
    if params.get("workers") == ("all",):
        params["workers"] = ()
    _leave_unselected(params, reuse)
    return reuse


def _leave_unselected(params: dict[str, Any], reuse: Reuse) -> None:
    try:
        selected = {w.name for w in select_workers(params["tracardi_version"],
                                                   params.get("workers") or ())}
    except CatalogError:
        return  # the selection itself is wrong: preparing the units says so
    for name in PER_WORKER:
        if name not in reuse.taken:
            continue
        kept = []
        for entry in reuse.taken[name]:
            worker, sep, _ = entry.partition("=")
            if sep and names.worker_name(worker) not in selected:
                reuse.dropped.append((name, (entry,), f"{worker} is not selected"))
            else:
                kept.append(entry)
        params[name] = reuse.taken[name] = tuple(kept)
        if not kept:
            del reuse.taken[name]
