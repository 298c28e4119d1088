"""The record of what `install` wrote: files with their hashes, units, options.

It is what lets a second `install` change nothing, an edited unit be told apart from one
the tool wrote, and `uninstall` remove exactly what was installed. It is data, not
authority: every name and path in it is checked on reading, so a manifest that was edited
or damaged can never make the tool remove or write a file outside its own.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.install.inflight import IMAGE_ID, UpgradeInFlight
from tracardi_systemd.names import KEPT, MANIFEST, is_quadlet_file, is_unit_file_name

_SHA256 = re.compile(r"[0-9a-f]{64}")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    unit_dir: str
    env_file: str
    tracardi_version: str
    units: list[str]  # the unit names install enables and starts
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of its text
    options: dict[str, object] = field(default_factory=dict)
    env_digest: str = ""  # sha256 of the env file install wrote ("" before this field)
    # What an install is about to write, saved before it writes: a file killed halfway
    # through the install is still recognised as the tool's by the next one.
    pending: dict[str, str] = field(default_factory=dict)
    pending_env_digest: str = ""
    # The last `upgrade`: the tag it left and the tag it went to. `upgrade --rollback` goes
    # back to previous_image_tag while the installed tag is still upgraded_image_tag.
    previous_image_tag: str = ""
    upgraded_image_tag: str = ""
    # Where the Quadlet .container files are (--runtime podman); "" when there are none.
    quadlet_dir: str = ""
    # An upgrade in flight (UpgradeInFlight.to_dict()); empty when none is.
    upgrade: dict[str, object] = field(default_factory=dict)
    # What each worker unit ran when `upgrade` last looked: {unit: {"tag", "id", "digest"}},
    # the tag it ran with and the image that tag resolved to (id, and repo digest if any).
    images: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def in_flight(self) -> UpgradeInFlight | None:
        return UpgradeInFlight.from_dict(self.upgrade) if self.upgrade else None

    def dir_of(self, name: str) -> str:
        """The folder a recorded file is in: .container files in quadlet_dir."""
        return self.quadlet_dir if is_quadlet_file(name) and self.quadlet_dir else self.unit_dir

    def owns(self, name: str, data: bytes) -> bool:
        sha = digest(data)
        return sha in (self.files.get(name), self.pending.get(name))

    def owns_env(self, data: bytes) -> bool:
        return digest(data) in {self.env_digest, self.pending_env_digest} - {""}

    def known_files(self) -> set[str]:
        return set(self.files) | set(self.pending)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        data.pop("workers", None)  # written by 0.1.0; the units say the same
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fields {', '.join(unknown)}")
        manifest = cls(**data)
        manifest.check()
        return manifest

    def check(self) -> None:
        """Refuse anything the tool would not have written (ValueError naming it)."""
        for name, value in (("unit_dir", self.unit_dir), ("env_file", self.env_file)):
            if not is_plain_absolute_path(value):
                raise ValueError(f"{name} {value!r} is not a normalized absolute path")
        if self.quadlet_dir != "" and not is_plain_absolute_path(self.quadlet_dir):
            raise ValueError(f"quadlet_dir {self.quadlet_dir!r} is not a normalized absolute path")
        if not self.quadlet_dir and any(is_quadlet_file(n) for n in self.known_files()):
            raise ValueError("it records .container files but no quadlet_dir")
        if not isinstance(self.tracardi_version, str):
            raise ValueError("tracardi_version is not text")
        if not isinstance(self.units, list) or not all(
                isinstance(u, str) and is_unit_file_name(u) for u in self.units):
            raise ValueError(f"units {self.units!r} are not all tracardi unit names")
        for what, table in (("files", self.files), ("pending", self.pending)):
            if not isinstance(table, dict):
                raise ValueError(f"{what} is not a mapping of unit file names to hashes")
            for name, sha in table.items():
                if not (isinstance(name, str) and is_unit_file_name(name)):
                    raise ValueError(f"{what}: {name!r} is not a tracardi unit file name")
                if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
                    raise ValueError(f"{what}: the hash of {name} is not a sha256")
        if not isinstance(self.options, dict):
            raise ValueError("options is not a mapping")
        for name in ("previous_image_tag", "upgraded_image_tag"):
            if not isinstance(getattr(self, name), str):  # render checks it as a docker tag
                raise ValueError(f"{name} is not text")
        if self.upgrade:
            UpgradeInFlight.from_dict(self.upgrade)
        if not isinstance(self.images, dict) or not all(
                isinstance(unit, str) and is_unit_file_name(unit) and isinstance(image, dict)
                and set(image) == {"tag", "id", "digest"}
                and all(isinstance(v, str) for v in image.values())
                and IMAGE_ID.fullmatch(image["id"]) for unit, image in self.images.items()):
            raise ValueError("images is not a mapping of unit names to {tag, id, digest}")
        for name in ("env_digest", "pending_env_digest"):
            value = getattr(self, name)
            if not isinstance(value, str) or (value and not _SHA256.fullmatch(value)):
                raise ValueError(f"{name} is not a sha256")


def is_plain_absolute_path(value: object) -> bool:
    return (isinstance(value, str) and value.startswith("/") and "\0" not in value
            and posixpath.normpath(value) == value and not value.startswith("//")
            and ".." not in value.split("/"))


def manifest_path(root: Path) -> Path:
    return root / MANIFEST


def kept_path(root: Path) -> Path:
    return root / KEPT


class ManifestError(Exception):
    pass


def load_manifest(root: Path) -> Manifest | None:
    return load_manifest_file(manifest_path(root))


def load_manifest_file(path: Path) -> Manifest | None:
    try:
        return Manifest.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError(
            f"{path} cannot be used ({exc}); move it away to start over "
            "(the tool will then treat existing unit files as not its own)"
        ) from exc


def save_manifest(root: Path, manifest: Manifest) -> None:
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, manifest.to_json().encode())
