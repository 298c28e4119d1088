"""The record of what `install` wrote: files with their hashes, units, options.

It is what lets a second `install` change nothing, an edited unit be told apart from one
the tool wrote, and `uninstall` remove exactly what was installed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tracardi_systemd.files import write_atomic

MANIFEST_PATH = "var/lib/tracardi-systemd/manifest.json"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    unit_dir: str
    env_file: str
    tracardi_version: str
    workers: list[str]
    units: list[str]  # the unit names install enables and starts
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of its text
    options: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))


def manifest_path(root: Path) -> Path:
    return root / MANIFEST_PATH


class ManifestError(Exception):
    pass


def load_manifest(root: Path) -> Manifest | None:
    path = manifest_path(root)
    try:
        return Manifest.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError(
            f"{path} cannot be read ({exc}); move it away to start over "
            "(the tool will then treat existing unit files as not its own)"
        ) from exc


def save_manifest(root: Path, manifest: Manifest) -> None:
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, manifest.to_json().encode())
