"""Installing rendered units: plan first (pure), then write, then tell systemd.

The planner decides, from the rendered files, what is on disk and the manifest of the last
install, what to create, update, keep and remove, and what to refuse (files the tool did
not write, or that an operator edited). Nothing is written unless the whole plan is
accepted, so a refused or failed validation leaves the host as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from stat import S_ISREG

from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.install.manifest import Manifest, digest
from tracardi_systemd.names import (
    DEFAULT_ENV_FILE,
    DEFAULT_QUADLET_DIR,
    LICENSE_SECRET,
    is_quadlet_file,
)
from tracardi_systemd.render.prepare import Prepared
from tracardi_systemd.spec.secrets import is_secret

ENV_FILE_MODE = 0o600
UNIT_FILE_MODE = 0o644


class FileAction(Enum):
    CREATE = "create"
    UPDATE = "update"
    KEEP = "keep"
    REMOVE = "remove"


@dataclass(frozen=True)
class FileChange:
    name: str
    action: FileAction
    old: str | None
    new: str | None


class InstallRefused(Exception):
    """The install would overwrite or remove what is not the tool's; nothing was changed."""


@dataclass(frozen=True)
class EnvFileCopy:
    source: Path
    target: Path
    data: bytes  # the bytes that were checked: what is written, never a second read
    needed: bool  # content differs (or the target is missing)
    fix_mode: bool  # content is right but owner or permissions are not

    def secret_names(self) -> list[str]:
        names = {line.partition("=")[0].strip() for line in self.data.decode().splitlines()}
        return sorted(name for name in names if name and is_secret(name))


@dataclass
class Plan:
    changes: list[FileChange] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    env: EnvFileCopy | None = None

    @property
    def file_changes(self) -> list[FileChange]:
        return [c for c in self.changes if c.action is not FileAction.KEEP]

    @property
    def removed(self) -> list[str]:
        return [c.name for c in self.changes if c.action is FileAction.REMOVE]

    @property
    def nothing_to_change(self) -> bool:
        env_change = self.env is not None and (self.env.needed or self.env.fix_mode)
        return not self.file_changes and not env_change

    def describe(self, with_diff: bool) -> list[str]:
        """What the plan does, one line per change; unified diffs of unit files if asked."""
        import difflib  # only --dry-run shows diffs; every other command starts faster

        lines = []
        if self.env and self.env.needed:
            secrets = self.env.secret_names()
            why = f"; content not shown: it holds secrets ({', '.join(secrets)})" if secrets else ""
            lines.append(f"copy env file {self.env.source} -> {self.env.target} "
                         f"(mode 0600{why})")
        elif self.env and self.env.fix_mode:
            lines.append(f"set owner root and mode 0600 on {self.env.target}")
        for change in self.file_changes:
            lines.append(f"{change.action.value} {change.name}")
            if with_diff:
                lines += difflib.unified_diff(
                    (change.old or "").splitlines(), (change.new or "").splitlines(),
                    f"a/{change.name}", f"b/{change.name}", lineterm="",
                )
        return lines


def plan_units(rendered: dict[str, str], current: dict[str, str | None],
               manifest: Manifest | None, force: bool) -> Plan:
    """Decide each unit file's fate. `current` maps file names to their text on disk."""
    recorded = manifest.known_files() if manifest else set()
    plan = Plan()
    for name in sorted(rendered.keys() | recorded):
        old, new = current.get(name), rendered.get(name)
        ours = old is not None and manifest is not None and manifest.owns(name, old.encode())
        if old is None:
            if new is not None:
                plan.changes.append(FileChange(name, FileAction.CREATE, None, new))
            continue
        if old == new:
            plan.changes.append(FileChange(name, FileAction.KEEP, old, new))
            continue
        if not ours and not force:
            why = ("was edited since tracardi-systemd wrote it" if name in recorded
                   else "was not written by tracardi-systemd")
            plan.refusals.append(
                f"{name} {why}: move local changes to a drop-in (systemctl edit {name}) "
                "and run again with --force to replace it"
            )
            continue
        action = FileAction.REMOVE if new is None else FileAction.UPDATE
        plan.changes.append(FileChange(name, action, old, new))
    return plan


def place(name: str, unit_dir: Path, quadlet_dir: Path | None) -> Path:
    """Where a file goes: Quadlet .container files in their own folder, the rest as units."""
    return (quadlet_dir if quadlet_dir is not None and is_quadlet_file(name) else unit_dir) / name


def read_current(unit_dir: Path, names: set[str],
                 quadlet_dir: Path | None = None) -> dict[str, str | None]:
    """Each file's text, None when missing. What is not a regular UTF-8 file reads as a
    text no rendering equals, so the planner refuses to replace it without --force."""
    current: dict[str, str | None] = {}
    for name in names:
        path = place(name, unit_dir, quadlet_dir)
        try:
            if path.is_symlink() or not path.is_file():
                exists = os.path.lexists(path)
                current[name] = f"<{path} is not a regular file>" if exists else None
                continue
            current[name] = path.read_bytes().decode()
        except FileNotFoundError:
            current[name] = None
        except UnicodeDecodeError:
            current[name] = f"<{path} is not UTF-8 text>"
    return current


def plan_env_copy(data: bytes, source: Path, target: Path, manifest: Manifest | None,
                  force: bool, tools_own_place: bool = False) -> EnvFileCopy:
    """Whether to write `data` (the checked bytes of `source`) to `target`.

    Raises InstallRefused for a target that is not a plain file the tool may own. The
    default place (/etc/tracardi/.env-docker) is the tool's by its documentation; a file
    elsewhere is the tool's only if the manifest records it.
    """
    try:
        stat = target.lstat()
    except FileNotFoundError:
        return EnvFileCopy(source, target, data, needed=True, fix_mode=False)
    if not S_ISREG(stat.st_mode):
        raise InstallRefused(
            f"{target} is a symlink or not a regular file: the installed env file must be a "
            "plain file (remove it, or choose another --installed-env-file)")
    current = target.read_bytes()
    wrong_mode = (stat.st_mode & 0o777) != ENV_FILE_MODE or stat.st_uid != os.geteuid()
    if current == data:
        return EnvFileCopy(source, target, data, needed=False, fix_mode=wrong_mode)
    ours = tools_own_place or (manifest is not None and manifest.owns_env(current))
    if not ours and not force and not _same_file(source, target):
        raise InstallRefused(
            f"{target} exists and was not written by tracardi-systemd: move it away, pass "
            "--env-file " + str(target) + " to install it as it is, or --force to replace it")
    return EnvFileCopy(source, target, data, needed=True, fix_mode=False)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def apply_files(plan: Plan, unit_dir: Path, quadlet_dir: Path | None = None) -> None:
    """Write the plan to disk: env file, then each unit file atomically."""
    if plan.env and plan.env.needed:
        plan.env.target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_atomic(plan.env.target, plan.env.data, ENV_FILE_MODE)
    elif plan.env and plan.env.fix_mode:
        # Through the open file, never the name: a link put there since cannot redirect it.
        fd = os.open(plan.env.target, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, os.geteuid(), os.getegid())
            os.fchmod(fd, ENV_FILE_MODE)
        finally:
            os.close(fd)
    unit_dir.mkdir(parents=True, exist_ok=True)
    for change in plan.file_changes:
        path = place(change.name, unit_dir, quadlet_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        if change.new is None:  # FileAction.REMOVE
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, change.new.encode(), UNIT_FILE_MODE)


def manifest_for(plan: Plan, **fields) -> Manifest:
    """The manifest after applying `plan`: hashes of every file the tool now owns."""
    files = {c.name: digest(c.new.encode()) for c in plan.changes if c.new is not None}
    return Manifest(files=files, **fields)


@dataclass(frozen=True)
class InstallRequest:
    root: Path  # "/" for the live system
    unit_dir: Path  # as seen on the target system, e.g. /etc/systemd/system
    env_source: Path
    env_data: bytes  # the checked bytes of env_source
    env_target: Path  # as seen on the target system
    rendered: dict[str, str]
    units: list[str]  # what to enable and start: target, agent, worker instances
    force: bool
    quadlet_dir: Path | None = None  # as seen on the target system; for --runtime podman
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # Podman's, by name

    @classmethod
    def of(cls, prepared: Prepared, root: Path, unit_dir: Path, env_source: Path,
           env_target: Path, force: bool = False) -> InstallRequest:
        """What installs `prepared`: its files, its units, and on Podman its folder and the
        license as a secret."""
        podman = prepared.settings.runtime == "podman"
        return cls(
            root=root, unit_dir=unit_dir, env_source=env_source, env_data=prepared.env.raw,
            env_target=env_target, rendered=prepared.files,
            units=[*prepared.infrastructure_units, *prepared.instances], force=force,
            quadlet_dir=Path(DEFAULT_QUADLET_DIR) if podman else None,
            secrets=_podman_secrets(prepared) if podman else {})

    def on_disk(self, path: Path) -> Path:
        return self.root / path.relative_to("/")


def _podman_secrets(prepared: Prepared) -> dict[str, str]:
    """The license as the commercial containers read it (LICENSE, else API_LICENSE)."""
    values = prepared.env.values
    license = values.get("LICENSE") or values.get("API_LICENSE")
    if license and any(w.commercial for w in prepared.settings.workers):
        return {LICENSE_SECRET: license}
    return {}



def quadlet_dir_on_disk(request: InstallRequest, previous: Manifest | None) -> Path | None:
    """Where .container files are read, written and removed: this install's folder, else
    the last install's (a move from podman back to docker removes them there)."""
    folder = request.quadlet_dir or (Path(previous.quadlet_dir) if previous and
                                     previous.quadlet_dir else None)
    return request.on_disk(folder) if folder else None


def plan_install(request: InstallRequest, previous: Manifest | None) -> Plan:
    """Raises InstallRefused when the env file's target may not be written."""
    unit_dir = request.on_disk(request.unit_dir)
    names = request.rendered.keys() | (previous.files.keys() if previous else set())
    current = read_current(unit_dir, set(names), quadlet_dir_on_disk(request, previous))
    plan = plan_units(request.rendered, current, previous, request.force)
    plan.env = plan_env_copy(request.env_data, request.env_source,
                             request.on_disk(request.env_target),
                             previous, request.force,
                             str(request.env_target) == DEFAULT_ENV_FILE)
    return plan


def units_no_longer_wanted(previous: Manifest | None, units: list[str]) -> list[str]:
    return [u for u in (previous.units if previous else []) if u not in units]
