"""The install transaction, in the order docs/design.md gives them, and what uninstall
(install/uninstall.py) shares with it: the root, its host adapters and its lock.

install: lock, clean what a killed install left, plan (refusing anything not the tool's),
pull, disable units no longer wanted, write files, save the manifest, daemon-reload, enable,
start. Nothing is written before the whole plan is accepted, and one install runs at a time.
The command line only turns options into an `InstallRequest` and prints what comes back.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tracardi_systemd.host.commands import CommandError, Docker, Systemctl, systemd_is_running
from tracardi_systemd.install.inflight import UpgradeInFlight, restore_images
from tracardi_systemd.install.lock import LockBusy, host_lock
from tracardi_systemd.install.manifest import (
    Manifest,
    ManifestError,
    digest,
    load_manifest,
    manifest_path,
    save_manifest,
)
from tracardi_systemd.install.plan import (
    FileAction,
    InstallRefused,
    InstallRequest,
    Plan,
    apply_files,
    manifest_for,
    plan_install,
    quadlet_dir_on_disk,
    units_no_longer_wanted,
)
from tracardi_systemd.names import (
    AGENT_UNIT,
    DEFAULT_AGENT_PROGRAM,
    PODMAN_SOCKET_UNIT,
    TARGET,
    generated_unit,
    is_unit_file_name,
    is_worker_unit,
)
from tracardi_systemd.spec.catalog import image_tag_for

# write_atomic's temporary files: ".<name>.<random>.tmp" beside the file it replaces.
_TEMP_FILE = re.compile(r"\.(?P<name>[^/]+)\.[A-Za-z0-9_]{8}\.tmp")


class InstallError(Exception):
    """What stopped an install or uninstall, worded for the operator."""


@dataclass(frozen=True)
class Result:
    lines: list[str]
    changed: bool  # files written, removed, or units enabled, disabled or started anew
    # Units running the old unit file or settings, until restarted (try-restart them).
    restart: list[str] = field(default_factory=list)


def remove_stale_temp_files(directories: list[Path]) -> list[Path]:
    """Temporary files a killed install left beside the files it writes; only ours."""
    removed = []
    for directory in directories:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(directory):
                match = _TEMP_FILE.fullmatch(entry.name)
                if match and entry.is_file(follow_symlinks=False) and _ours(match["name"]):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _ours(name: str) -> bool:
    return is_unit_file_name(name) or name in ("manifest.json", ".env-docker")


MIN_PODMAN = (4, 4)  # the first with Quadlet


def require_quadlet(podman: Docker) -> None:
    """Refuse Podman without Quadlet (Debian 12's 4.3): a plain `podman run` unit would be
    the Docker path again, without what --runtime podman is for."""
    try:
        version = podman("version", "--format", "{{.Client.Version}}").strip()
    except (CommandError, OSError) as exc:
        raise InstallError(f"--runtime podman: {podman.program} does not answer ({exc}): "
                           "install Podman 4.4 or later (apt-get install podman)") from None
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if parts < MIN_PODMAN:
        raise InstallError(
            f"--runtime podman needs Podman 4.4 or later (Quadlet); this host has {version} "
            "(Debian 12 ships 4.3): use --runtime docker here, or Debian 13 / RHEL 9 "
            "for Podman")


# Where Podman looks for the init binary of RunInit=true (`--init`): the default
# helper_binaries_dir of containers.conf, then $PATH.
PODMAN_HELPER_DIRS = ("/usr/local/libexec/podman", "/usr/local/lib/podman",
                      "/usr/libexec/podman", "/usr/lib/podman")
PODMAN_INIT = "catatonit"


def require_podman_init(search: Iterable[str] | None = None) -> None:
    """Refuse a Podman host without catatonit: every worker runs with RunInit=true, and
    without it each start fails ("lookup init binary"), a crash loop install would not
    show. `search`: the folders to look in (default: Podman's helper folders, then PATH)."""
    folders = list(search) if search is not None else [
        *PODMAN_HELPER_DIRS, *os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)]
    if any(os.access(Path(folder, PODMAN_INIT), os.X_OK) for folder in folders if folder):
        return
    raise InstallError(
        f"--runtime podman: Podman's init binary {PODMAN_INIT} is not on this host (looked "
        f"in {', '.join(PODMAN_HELPER_DIRS)} and PATH); the worker units run with "
        f"RunInit=true and would fail at every start: install it (apt-get install "
        f"{PODMAN_INIT}, dnf install {PODMAN_INIT}); nothing was changed")


class Transaction:
    """What install and uninstall share: one root, its host adapters, its lock."""

    def __init__(self, root: Path | None, systemctl: Systemctl, docker: Docker):
        self.root = root or Path("/")
        self.live = root is None
        self.systemctl = systemctl
        self.docker = docker
        self.holding = False  # the lock, taken by hold() for several installs in a row

    def on_disk(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def require_live_host(self, command: str = "install",
                          otherwise: str = "use --root DIR to prepare an offline root") -> None:
        """Root, a running systemd and the container engine's client; `otherwise` says
        what `command` can do without them."""
        if os.geteuid() != 0:
            raise InstallError(f"{command} changes the system and needs root: run it with "
                               f"sudo (or {otherwise})")
        if not systemd_is_running():
            raise InstallError(
                f"systemd is not running on this host (no /run/systemd/system): {command} "
                f"needs a running systemd, or {otherwise}")
        if self.docker.program.endswith("podman"):
            require_quadlet(self.docker)
            require_podman_init()
        elif not Path(self.docker.program).exists():
            raise InstallError(f"the docker client {self.docker.program} is missing: install "
                               "Docker (apt-get install docker.io) or pass --docker PATH")

    def previous(self) -> Manifest | None:
        try:
            return load_manifest(self.root)
        except ManifestError as exc:
            raise InstallError(str(exc)) from None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """The root's lock for everything inside (an upgrade: its installs, restarts and
        rollback); InstallError when another install, uninstall or upgrade holds it."""
        with self._lock():
            self.holding = True
            try:
                yield
            finally:
                self.holding = False

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            with host_lock(self.root):
                yield
        except LockBusy:
            raise InstallError(self._busy()) from None
        except OSError as exc:
            raise InstallError(os_message(exc)) from None

    def _busy(self) -> str:
        with contextlib.suppress(InstallError, ValueError):
            manifest = self.previous()
            record = manifest.in_flight if manifest else None
            if record is not None and record.running:
                return (f"{record.describe()} is running on {self.root} (pid {record.pid}): "
                        "wait for it to finish, then run again; nothing was changed")
        return (f"another tracardi-systemd install, uninstall or upgrade is running on "
                f"{self.root}: wait for it to finish, then run again; nothing was changed")

    @contextlib.contextmanager
    def _locked(self, writing: bool) -> Iterator[None]:
        if not writing or self.holding:
            yield
            return
        with self._lock():
            yield

    def _stop_jobs(self, files: Iterable[str], listed: list[str], reset: list[str]) -> None:
        """Stop the services among `files` that are not in `listed` (a scheduled job's,
        started by its timer and never enabled, so `disable --now` misses it), then forget
        the failures of those and of `reset`: a unit whose file is gone would stay loaded
        as `not-found`, and a failed one listed as failed."""
        if not self.live:
            return
        jobs = _never_enabled(files, listed)
        if jobs:
            self.systemctl("stop", *jobs)
        if reset or jobs:
            self._reset_failed([*reset, *jobs])

    def _reset_failed(self, units: list[str]) -> None:
        """Forget the failures of units that failed; only of those: systemd 257 unloads a
        stopped unit at once and refuses reset-failed of a unit it has not loaded."""
        shown = self.systemctl.show(units, ["ActiveState"])
        failed = [unit for unit in units if shown.get(unit, {}).get("ActiveState") == "failed"]
        if failed:
            self.systemctl("reset-failed", *failed)


class Installer(Transaction):
    """Carries out install against one root with the given host adapters."""

    def agent_program(self, running: str) -> str:
        """The packaged program when installed, else `running`."""
        packaged = self.on_disk(Path(DEFAULT_AGENT_PROGRAM))
        return DEFAULT_AGENT_PROGRAM if packaged.exists() else running

    def require_trusted(self, agent_program: str, client: str) -> None:
        """Refuse programs root's units would run while another user can edit them (or what
        they load): the agent program and the docker or podman client, however chosen."""
        from tracardi_systemd.install.trust import agent_program_problem, program_problem

        if os.geteuid() != 0:
            return  # only root runs them: nothing installed by another user is root's code
        checks = [(agent_program, "the agent unit", agent_program_problem(Path(agent_program))),
                  (client, "the worker units", program_problem(Path(client)))]
        for program, units, problem in checks:
            if problem:
                raise InstallError(
                    f"{units} would run {program} as root, but {problem}: install it from "
                    "its package or into a root-owned folder (tracardi-systemd: its deb or "
                    "rpm, or a root-owned venv such as /opt/tracardi-systemd), or name a "
                    "root-owned one with --agent-program or --docker; nothing was changed")

    def plan(self, request: InstallRequest, previous: Manifest | None) -> Plan:
        try:
            plan = plan_install(request, previous)
        except InstallRefused as exc:
            raise InstallError(f"{exc}; nothing was changed") from None
        if plan.refusals:
            listed = "\n".join(f"{request.unit_dir}/{refusal}" for refusal in plan.refusals)
            raise InstallError(f"{listed}\nrefused to overwrite the files above; "
                               "nothing was changed")
        return plan

    def install(self, request: InstallRequest, *, images: list[str], options: dict,
                tracardi_version: str, enable: bool, start: bool,
                dry_run: bool, upgrade: tuple[str, str] | None = None) -> Result:
        """`upgrade`: (previous tag, new tag) to record for `upgrade --rollback`; None
        keeps the record of the last upgrade."""
        with self._locked(not dry_run):
            previous = self.previous()
            plan = self.plan(request, previous)
            if dry_run:
                lines = (_version_move(previous, request, tracardi_version)
                         + plan.describe(with_diff=True) + _unit_set_change(previous, request))
                return Result(lines or ["nothing to change"], changed=bool(lines))
            return self._apply(request, previous, plan, images=images, options=options,
                               tracardi_version=tracardi_version, enable=enable, start=start,
                               upgrade=upgrade)

    def _apply(self, request: InstallRequest, previous: Manifest | None, plan: Plan, *,
               images: list[str], options: dict, tracardi_version: str, enable: bool,
               start: bool, upgrade: tuple[str, str] | None) -> Result:
        unit_dir = request.on_disk(request.unit_dir)
        quadlet_dir = quadlet_dir_on_disk(request, previous)
        remove_stale_temp_files([unit_dir, *([quadlet_dir] if quadlet_dir else []),
                                 manifest_path(self.root).parent,
                                 request.on_disk(request.env_target).parent])
        moving = _version_move(previous, request, tracardi_version)
        lines = moving + plan.describe(with_diff=False) + _unit_set_change(previous, request)
        try:
            for image in images:
                self.docker.pull(image)
            stale = units_no_longer_wanted(previous, request.units)
            if stale:
                self.systemctl.disable(stale, now=self.live)
            self._stop_jobs(plan.removed, stale, reset=stale)
            if not plan.nothing_to_change:
                save_manifest(self.root, _with_pending(previous, request, plan))
            apply_files(plan, unit_dir, quadlet_dir)
            if self.live:
                self._create_secrets(request)
            elif request.secrets:
                lines.append(f"an offline root cannot hold Podman secrets: on the host, run "
                             f"podman secret create --replace NAME - for "
                             f"{', '.join(sorted(request.secrets))} (value on stdin)")
            manifest = manifest_for(
                plan, unit_dir=str(request.unit_dir), env_file=str(request.env_target),
                quadlet_dir=str(request.quadlet_dir or ""),
                tracardi_version=tracardi_version, units=request.units, options=options,
                env_digest=digest(request.env_data))
            manifest.previous_image_tag, manifest.upgraded_image_tag = upgrade or (
                (previous.previous_image_tag, previous.upgraded_image_tag) if previous
                else ("", ""))
            interrupted = self._interrupted(previous)
            if previous is not None:
                manifest.images = {u: i for u, i in previous.images.items() if u in request.units}
                manifest.upgrade = previous.upgrade  # cleared once every worker converged
            if previous is None or manifest.to_json() != previous.to_json():
                save_manifest(self.root, manifest)
            if not plan.nothing_to_change:
                self.systemctl.daemon_reload()
                if self.live and moving:
                    self._restart_kept(previous, request)
                elif self.live and previous and (restart := to_restart(plan, request)):
                    lines.append("units already running keep their old unit file or settings "
                                 f"until restarted: systemctl try-restart {' '.join(restart)}")
                if self.live and AGENT_UNIT in {c.name for c in plan.file_changes}:
                    self.systemctl("try-restart", AGENT_UNIT)
            if interrupted is not None:
                lines += self._converge(interrupted, request, options, tracardi_version)
                manifest.upgrade = {}
                save_manifest(self.root, manifest)
            if enable:
                lines += self._enable_podman_socket(request)
                self.systemctl.enable(request.units)
            if start:
                self.systemctl.start(request.units)
        except CommandError as exc:
            raise InstallError(str(exc)) from None
        except OSError as exc:
            raise InstallError(os_message(exc)) from None
        changed = bool(lines)
        restart = to_restart(plan, request) if previous is not None and not moving else []
        return Result(lines or ["nothing to change"], changed, restart)

    def _interrupted(self, previous: Manifest | None) -> UpgradeInFlight | None:
        """The record of an upgrade that was killed, which this install ends; None when
        there is none, or when it is an upgrade's own install (it holds the lock)."""
        if previous is None or self.holding or not self.live:
            return None
        return previous.in_flight

    def _converge(self, record: UpgradeInFlight, request: InstallRequest, options: dict,
                  tracardi_version: str) -> list[str]:
        """After a killed upgrade the running workers may be on two tags: every one is
        restarted on the tag just installed (on the image it ran before the upgrade when
        that tag is the upgrade's old one)."""
        tag = str(options.get("image_tag") or image_tag_for(tracardi_version))
        lines = [f"{record.describe()} was interrupted (pid {record.pid} is gone): every "
                 f"running worker is restarted on tag {tag}"]
        if tag == record.from_tag:
            lines += restore_images(self.docker, record.images)
        workers = [u for u in request.units if is_worker_unit(u)]
        if workers:
            self.systemctl("try-restart", *workers)
        return lines

    def _enable_podman_socket(self, request: InstallRequest) -> list[str]:
        """The agent reaches Podman through podman.socket, which Debian 13's package leaves
        disabled; enabled and started once, then left alone (other programs may use it)."""
        if request.quadlet_dir is None or not self.live:
            return []
        shown = self.systemctl.show([PODMAN_SOCKET_UNIT], ["UnitFileState", "ActiveState"])
        state = shown.get(PODMAN_SOCKET_UNIT, {})
        if state.get("UnitFileState") == "enabled" and state.get("ActiveState") == "active":
            return []
        self.systemctl("enable", "--now", "--quiet", PODMAN_SOCKET_UNIT)
        return [f"enabled and started {PODMAN_SOCKET_UNIT}: the agent's way to Podman's API"]

    def _create_secrets(self, request: InstallRequest) -> None:
        """Podman secrets from stdin: the value is in no argv and no file of the tool's."""
        for name, value in sorted(request.secrets.items()):
            self.docker("secret", "create", "--replace", name, "-", input=value)

    def _restart_kept(self, previous: Manifest | None, request: InstallRequest) -> None:
        """Another Tracardi release: a unit both releases have must not go on running the
        old release's image, so those running are restarted (init first, by its order)."""
        before = set(previous.units) if previous else set()
        kept = [u for u in request.units if u in before and u not in (TARGET, AGENT_UNIT)]
        if kept:
            self.systemctl("try-restart", *kept)


def to_restart(plan: Plan, request: InstallRequest) -> list[str]:
    """The units whose file changed, and every worker when the settings changed; the
    run-once init only when its own file changed (a restart runs Tracardi's install again),
    never the target or a timer."""
    changed = {generated_unit(c.name) for c in plan.file_changes if c.action is FileAction.UPDATE}
    settings = plan.env is not None and plan.env.needed
    return [unit for unit in request.units
            if unit in changed or re.sub(r"@[^.]*\.", "@.", unit) in changed
            or (settings and is_worker_unit(unit))]


def _with_pending(previous: Manifest | None, request: InstallRequest, plan: Plan) -> Manifest:
    """The previous manifest plus what this install is about to write."""
    base = previous or Manifest(unit_dir=str(request.unit_dir), env_file=str(request.env_target),
                                tracardi_version="", units=[])
    pending = {c.name: digest(c.new.encode()) for c in plan.file_changes if c.new is not None}
    return replace(base, pending=pending, pending_env_digest=digest(request.env_data),
                   quadlet_dir=base.quadlet_dir or str(request.quadlet_dir or ""))


def _unit_set_change(previous: Manifest | None, request: InstallRequest) -> list[str]:
    """Units added or dropped although no file changed (replicas of a template)."""
    if previous is None:
        return []
    before, after = set(previous.units), set(request.units)
    files = set(request.rendered) | set(previous.files)
    lines = [f"enable {u}" for u in sorted(after - before) if u not in files]
    lines += [f"disable {u}" for u in sorted(before - after) if u not in files]
    return lines


def _never_enabled(files: Iterable[str], units: list[str]) -> list[str]:
    """The unit files among `files` that are not in `units` and not templates or the
    target: the services of scheduled jobs, which their timers start."""
    return sorted(generated_unit(name) for name in files
                  if "@." not in name and name != TARGET and name not in units)


def _version_move(previous: Manifest | None, request: InstallRequest,
                  version: str) -> list[str]:
    """What moving to another Tracardi release does, said before it is done."""
    if previous is None or previous.tracardi_version in ("", version):
        return []
    gone = units_no_longer_wanted(previous, request.units)
    stopped = f"stop and disable {', '.join(gone)}" if gone else "no unit goes away"
    return [f"Tracardi {previous.tracardi_version} -> {version}: {stopped}; units of both "
            f"releases that are running restart on {version}'s images"]


def os_message(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return (f"cannot write{where}: {exc.strerror or exc}; a file being written was left "
            "as it was, and the next install completes what this one did not")
