"""The uninstall transaction: stop, disable and remove what install wrote; keep what was
edited since (or the env file without --purge), recorded for the next uninstall, each named
with the command that removes it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tracardi_systemd.host.commands import CommandError
from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.install.manifest import (
    Manifest,
    ManifestError,
    kept_path,
    load_manifest_file,
    manifest_path,
)
from tracardi_systemd.install.transaction import InstallError, Transaction, os_message
from tracardi_systemd.names import AGENT_STATE_FILE, LICENSE_SECRET


class Uninstaller(Transaction):
    """Carries out uninstall against one root; on a Podman install `docker` is podman."""

    def run(self, purge: bool, force: bool, say: Callable[[str], None],
            dry_run: bool = False) -> None:
        """Stop, disable and remove what install wrote, and what an earlier uninstall kept
        when now told to remove it. What is kept again is recorded for the next one."""
        with self._locked(not dry_run):
            manifest, kept = self.previous(), self._kept()
            if manifest is None and kept is None:
                say("nothing to uninstall: tracardi-systemd has installed nothing here")
                return
            whole = _with_kept(manifest, kept)
            if dry_run:
                if whole.units:
                    say(f"would stop and disable {', '.join(whole.units)}")
                self._remove_files(whole, purge, force, say, dry_run=True)
                self._remove_secrets(whole, purge, say, dry_run=True)
                return
            try:
                if whole.units:
                    self.disable(whole.units, quadlet=bool(whole.quadlet_dir))
                    self._stop_jobs(whole.known_files(), whole.units, reset=whole.units)
            except CommandError as exc:
                say(f"warning: {exc}")
            try:
                left = self._remove_files(whole, purge, force, say)
                self._remove_own_state(whole, left)
                self.systemctl.daemon_reload()
                self._remove_secrets(whole, purge, say)
            except CommandError as exc:
                say(f"warning: {exc}")
            except OSError as exc:
                raise InstallError(os_message(exc)) from None

    def _remove_secrets(self, manifest: Manifest, purge: bool, say: Callable[[str], None],
                        dry_run: bool = False) -> None:
        """Podman's license secret goes with --purge, as the env file it came from does."""
        if not (purge and manifest.quadlet_dir and self.live):
            return
        if dry_run:
            say(f"would remove the Podman secret {LICENSE_SECRET}, if it exists")
            return
        try:
            self.docker("secret", "rm", LICENSE_SECRET)
        except CommandError as exc:
            if "no such secret" not in str(exc):
                raise
            return
        say(f"removed the Podman secret {LICENSE_SECRET}")

    def _kept(self) -> Manifest | None:
        try:
            return load_manifest_file(kept_path(self.root))
        except ManifestError as exc:
            raise InstallError(str(exc)) from None

    def _remove_files(self, manifest: Manifest, purge: bool, force: bool,
                      say: Callable[[str], None], dry_run: bool = False) -> Manifest:
        """Remove the files; the record of those kept (units empty), each named with the
        command that removes it."""
        keep, remove = ("would keep", "would remove") if dry_run else ("kept", "removed")
        left = replace(manifest, units=[], files={}, pending={}, options={}, env_digest="",
                       pending_env_digest="")
        for name in sorted(manifest.known_files()):
            path = self.on_disk(Path(manifest.dir_of(name))) / name
            if not os.path.lexists(path):
                continue
            data = _contents(path)
            if not force and (data is None or not manifest.owns(name, data)):
                say(f"{keep} {path}: it was edited since tracardi-systemd wrote it "
                    "(uninstall --force removes it)")
                left.files[name] = manifest.files.get(name) or manifest.pending.get(name, "")
                continue
            if not dry_run:
                path.unlink()
            say(f"{remove} {path}")
        env_file = self.on_disk(Path(manifest.env_file))
        if not os.path.lexists(env_file):
            return left
        data = _contents(env_file)
        owned = not manifest.env_digest or (data is not None and manifest.owns_env(data))
        if purge and (force or owned):
            if not dry_run:
                env_file.unlink()
            say(f"{remove} {env_file}")
            return left
        left.env_digest = manifest.env_digest
        left.pending_env_digest = manifest.pending_env_digest
        if not purge:
            say(f"{keep} {env_file} (uninstall --purge removes it)")
        else:
            say(f"{keep} {env_file}: it changed since tracardi-systemd wrote it "
                "(uninstall --purge --force removes it)")
        return left

    def _remove_own_state(self, manifest: Manifest, left: Manifest) -> None:
        """The manifest and the agent's state; the record of what was kept, or none; the
        folders they were in when nothing else is left there."""
        with contextlib.suppress(FileNotFoundError):
            manifest_path(self.root).unlink()
        kept = kept_path(self.root)
        if left.files or left.env_digest or os.path.lexists(self.on_disk(Path(left.env_file))):
            write_atomic(kept, left.to_json().encode(), mode=0o600)
        else:
            with contextlib.suppress(FileNotFoundError):
                kept.unlink()
        dirs = [manifest_path(self.root).parent, self.on_disk(Path(manifest.env_file)).parent]
        if self.live:
            with contextlib.suppress(FileNotFoundError):
                AGENT_STATE_FILE.unlink()
            dirs.append(AGENT_STATE_FILE.parent)
        for directory in dirs:
            with contextlib.suppress(OSError):  # rmdir refuses a folder that is not empty
                directory.rmdir()


def _with_kept(manifest: Manifest | None, kept: Manifest | None) -> Manifest:
    """The installed manifest with what an earlier uninstall kept in the same folders."""
    if manifest is None:
        assert kept is not None
        return kept
    if kept is None or (kept.unit_dir, kept.quadlet_dir) != (manifest.unit_dir,
                                                              manifest.quadlet_dir):
        return manifest
    return replace(manifest, files=kept.files | manifest.files)


def _contents(path: Path) -> bytes | None:
    """A plain file's bytes; None for anything else."""
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None
