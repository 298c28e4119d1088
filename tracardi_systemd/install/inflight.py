"""The record of an upgrade in flight, kept in the manifest from before the first unit file
changes until every unit is on one tag again.

While the upgrade that wrote it runs, the record tells the agent to leave the workers to
the upgrade's gate and tells `install` who holds the lock. When its process is gone (a
SIGKILL, a power loss), the record is how `status`, the agent, and the next `install` or
`upgrade` know that the units may run two tags, and which image each ran before.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field

import psutil

from tracardi_systemd.host.commands import CommandError, Docker

IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class UpgradeInFlight:
    from_tag: str
    to_tag: str
    pid: int  # the upgrade's process
    pid_started: float  # its start time (psutil), so a reused pid is not taken for it
    # Each image reference of from_tag -> the image id the workers ran with it: a rollback
    # returns them to that image even when the tag was moved since.
    images: dict[str, str] = field(default_factory=dict)

    @classmethod
    def here(cls, from_tag: str, to_tag: str, images: dict[str, str]) -> UpgradeInFlight:
        """A record naming this process as the upgrade."""
        return cls(from_tag, to_tag, os.getpid(), psutil.Process().create_time(), images)

    @property
    def running(self) -> bool:
        """Whether the process that wrote the record still runs (and so holds the lock)."""
        try:
            return abs(psutil.Process(self.pid).create_time() - self.pid_started) < 0.01
        except (psutil.Error, OSError):
            return False

    def describe(self) -> str:
        return f"the upgrade from image tag {self.from_tag} to {self.to_tag}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> UpgradeInFlight:
        """ValueError naming what is wrong in a record read from the manifest."""
        if not isinstance(data, dict) or set(data) != {f for f in cls.__dataclass_fields__}:
            raise ValueError("upgrade is not an upgrade record")
        record = cls(**data)
        if not (isinstance(record.from_tag, str) and isinstance(record.to_tag, str)
                and isinstance(record.pid, int) and isinstance(record.pid_started, float)
                and isinstance(record.images, dict)):
            raise ValueError("upgrade: a field has the wrong type")
        if not all(isinstance(ref, str) and isinstance(image, str) and IMAGE_ID.fullmatch(image)
                   for ref, image in record.images.items()):
            raise ValueError("upgrade: images must map image references to image ids")
        return record


def restore_images(docker: Docker, images: dict[str, str]) -> list[str]:
    """Point each reference back at the image it named before (`docker tag ID REF`), so
    the units, which name the reference, run that image again; what was done, in lines."""
    lines = []
    for ref, image in sorted(images.items()):
        try:
            docker("tag", image, ref)
        except CommandError as exc:
            lines.append(f"warning: {ref} could not be pointed back at {image[:19]} ({exc}); "
                         "it runs the image the tag names now")
        else:
            lines.append(f"{ref} points at {image[:19]} again, the image it ran before")
    return lines
