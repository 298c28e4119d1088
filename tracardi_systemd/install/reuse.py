"""How an install reuses the options of the last one, recorded in its manifest."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tracardi_systemd.install.manifest import Manifest

REUSED = ("runtime", "tracardi_version", "workers", "image_tag", "network", "replicas",
          "worker_env", "installed_env_file", "docker", "stop_timeout", "agent_interval",
          "memory_limits", "liveness", "liveness_interval", "tool")

# Options that name a release's workers or images: they are not carried to another release.
VERSION_BOUND = ("workers", "image_tag", "replicas", "memory_limits")


def recorded(params: dict[str, Any]) -> dict[str, Any]:
    """The options an install records in its manifest, JSON-ready."""
    return {name: list(params[name]) if isinstance(params[name], tuple) else params[name]
            for name in REUSED if params.get(name) not in (None, (), {})}


def reuse_previous(params: dict[str, Any], given: Collection[str],
                   previous: Manifest | None) -> list[str]:
    """Fill the options not `given` on this command line from the last install; say which
    were reused and, when the Tracardi version changes, which were not (they name the old
    release's workers or image tag)."""
    if previous is None:
        return []
    lines = []
    if "tracardi_version" not in given:
        params["tracardi_version"] = previous.tracardi_version
        lines.append(f"from the last install: --tracardi-version={previous.tracardi_version}")
    moving = params["tracardi_version"] != previous.tracardi_version
    for name, value in previous.options.items():
        if name not in REUSED or name == "tracardi_version" or name in given:
            continue
        value = tuple(value) if isinstance(value, list) else value
        shown = " ".join(value) if isinstance(value, tuple) else value
        option = f"--{name.replace('_', '-')}={shown}"
        if moving and name in VERSION_BOUND:
            lines.append(f"not from the last install (Tracardi {previous.tracardi_version}, "
                         f"now {params['tracardi_version']}): {option}")
            continue
        params[name] = value
        lines.append(f"from the last install: {option}")
    record = previous.in_flight
    if record is not None and "image_tag" not in given and not moving:
        # A killed upgrade is rolled back, not finished: its new tag never passed the gate
        # on every worker (docs/design.md).
        params["image_tag"] = record.from_tag
        lines.append(f"from {record.describe()}, which was interrupted: "
                     f"--image-tag={record.from_tag}, the tag every worker ran before it")
    if params.get("workers") == ("all",):
        params["workers"] = ()
    return lines
