"""`upgrade`: every worker onto another image tag, one at a time, each behind a gate; when
one fails, every worker restarted so far goes back to the previous tag.

Order: validate both tags' unit files, pull every image (nothing restarts when one cannot
be had), install the new tag through the Installer (recording both tags in the manifest),
then restart the running workers one after another, each gated (gate.py). A rollback is an
install of the previous tag and a restart of the workers already upgraded, gated the same
way. Each outcome is a journal entry of its own MESSAGE_ID.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tracardi_systemd.host.commands import CommandError, ContainerSource
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.host.journal import Journal, Priority
from tracardi_systemd.install.manifest import Manifest, manifest_path
from tracardi_systemd.install.plan import InstallRequest
from tracardi_systemd.install.reuse import REUSED, recorded
from tracardi_systemd.install.transaction import Installer, InstallError, Result
from tracardi_systemd.names import LABEL_MANAGED, is_worker_unit, worker_of_unit
from tracardi_systemd.observe.read import read_units
from tracardi_systemd.render.prepare import Prepared, PrepareError, prepare
from tracardi_systemd.upgrade.gate import (
    Gate,
    GateTimes,
    Probe,
    Target,
    Verdict,
    liveness_probe,
    watch,
)


class UpgradeEvent(Enum):
    """Journal entries of `upgrade`; never change an id: alerts match on them."""

    STARTED = "4eedf3cf05c64fb5acabf80e656b6b07"
    DONE = "4562caa93f9b4a8f8f66faa6303dc1a5"
    ROLLED_BACK = "e7332238671c41d989ddb0f5288dc36a"
    ROLLBACK_FAILED = "b1d0037c94794e66a46374cdf8b4df4c"


SYSLOG_IDENTIFIER = "tracardi-systemd"
# Exit status per result: 1 is any refusal before a worker was restarted, 2 click's usage
# error.
EXIT_STATUS = {"done": 0, "unchanged": 0, "planned": 0, "rolled back": 3,
               "rollback failed": 4}


class UpgradeError(Exception):
    """Refused before any worker was restarted; the message says what to do."""


@dataclass(frozen=True)
class UpgradeSettings:
    window: float = 30.0
    start_timeout: float = 60.0
    liveness_timeout: float | None = None  # None: each check's own start period
    pull: str = "always"

    @property
    def times(self) -> GateTimes:
        return GateTimes(self.window, self.start_timeout, self.liveness_timeout)


@dataclass
class Outcome:
    result: str  # a key of EXIT_STATUS
    from_tag: str
    to_tag: str
    changed: bool
    lines: list[str] = field(default_factory=list)
    failed_unit: str = ""
    reason: str = ""

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.result]

    def to_json(self) -> str:
        return json.dumps({"changed": self.changed, "result": self.result,
                           "from_tag": self.from_tag, "to_tag": self.to_tag,
                           "failed_unit": self.failed_unit, "reason": self.reason,
                           "lines": self.lines})


def installed_tag(manifest: Manifest) -> str:
    return str(manifest.options.get("image_tag") or manifest.tracardi_version)


def rollback_tag(manifest: Manifest) -> str:
    """The tag `upgrade --rollback` goes to; UpgradeError when there is none."""
    current = installed_tag(manifest)
    if not manifest.previous_image_tag:
        raise UpgradeError("no upgrade is recorded on this host, so there is no tag to roll "
                           "back to: run  upgrade --image-tag TAG  with the tag you want")
    if manifest.upgraded_image_tag != current:
        raise UpgradeError(
            f"the workers run tag {current}, set by install after the last upgrade (which "
            f"went from {manifest.previous_image_tag} to {manifest.upgraded_image_tag}): run "
            "upgrade --image-tag TAG  with the tag you want")
    return manifest.previous_image_tag


@contextlib.contextmanager
def upgrade_lock(root: Path) -> Iterator[None]:
    """One upgrade at a time; the lock is on the tool's state folder."""
    fd = os.open(manifest_path(root).parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpgradeError("another tracardi-systemd upgrade is running on this host: "
                               "wait for it to finish; nothing was changed") from None
        yield
    finally:
        os.close(fd)


class Upgrade:
    """One upgrade of the installation `installer` manages (a live host)."""

    def __init__(self, installer: Installer, journal: Journal, say: Callable[[str], None],
                 engine: ContainerSource, probe: Probe | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        manifest = installer.previous()
        if manifest is None:
            raise UpgradeError("nothing is installed: run  sudo tracardi-systemd install "
                               "--env-file FILE  first")
        self.manifest = manifest
        self.installer = installer
        self.engine = engine
        self.journal = journal
        self.probe = probe or liveness_probe(installer.docker)
        self.clock, self.sleep = clock, sleep
        self.lines: list[str] = []
        self.times = UpgradeSettings().times
        self._say = say

    def say(self, line: str) -> None:
        self.lines.append(line)
        self._say(line)

    def run(self, to_tag: str, settings: UpgradeSettings, dry_run: bool = False) -> Outcome:
        from_tag = installed_tag(self.manifest)
        self.times = settings.times
        if to_tag == from_tag:
            self.say(f"the workers are already installed with image tag {to_tag}: "
                     "nothing to do")
            return Outcome("unchanged", from_tag, to_tag, False, self.lines)
        new, old = self._prepare(to_tag), self._prepare(from_tag)
        stopped = self._stopped(new)
        units = [u for u in new.instances if is_worker_unit(u) and u not in stopped]
        if dry_run:
            self._show_plan(new, from_tag, to_tag, units, stopped, settings)
            return Outcome("planned", from_tag, to_tag, True, self.lines)
        self._say_stopped(stopped)
        self._require_engine(from_tag)
        with upgrade_lock(self.installer.root):
            self._pull(new, to_tag, from_tag, settings.pull)
            record_before = (self.manifest.previous_image_tag,
                             self.manifest.upgraded_image_tag)
            self._send(UpgradeEvent.STARTED, Priority.NOTICE,
                       f"upgrade of {len(units)} Tracardi worker unit(s) from image tag "
                       f"{from_tag} to {to_tag} started", from_tag, to_tag)
            try:
                self._install(new, (from_tag, to_tag))
            except InstallError as exc:
                raise UpgradeError(f"{exc}\nno worker was restarted") from None
            upgraded: list[str] = []
            for unit in units:
                upgraded.append(unit)
                self.say(f"restarting {unit} on {to_tag}")
                verdict = self._restart_gated([unit], new)[0]
                if not verdict.passed:
                    return self._roll_back(verdict, upgraded, old, record_before, from_tag,
                                           to_tag)
                self.say(f"{unit} passed the gate")
        self._send(UpgradeEvent.DONE, Priority.NOTICE,
                   f"upgrade from image tag {from_tag} to {to_tag} done: {len(units)} "
                   "worker unit(s) passed the gate", from_tag, to_tag)
        self.say(f"upgraded from {from_tag} to {to_tag}")
        return Outcome("done", from_tag, to_tag, True, self.lines)

    def _require_engine(self, from_tag: str) -> None:
        """The gate asks Docker's Engine API: a dockerd this tool cannot speak to (one that
        refuses every API version it knows) stops the upgrade before anything changes,
        instead of failing the first gate and then the rollback's."""
        try:
            self.engine.containers(f"{LABEL_MANAGED}=true")
        except EngineError as exc:
            raise UpgradeError(f"Docker's Engine API does not answer, so no worker could "
                               f"be gated: {exc}\nno worker was restarted, they all still "
                               f"run {from_tag}") from None

    def _prepare(self, tag: str) -> Prepared:
        params = self._params(tag)
        env_file = self.installer.on_disk(Path(self.manifest.env_file))
        try:
            return prepare(env_file, **params)
        except PrepareError as exc:
            problems = "".join(f"\n{p}" for p in exc.problems)
            raise UpgradeError(f"{exc}{problems}\nnothing was changed") from None

    def _params(self, tag: str) -> dict:
        """The options of the last install, with another image tag."""
        params = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in self.manifest.options.items() if name in REUSED}
        return params | {"tracardi_version": self.manifest.tracardi_version,
                         "image_tag": tag}

    def _stopped(self, new: Prepared) -> list[str]:
        """The worker units an operator stopped: they stay stopped."""
        workers = [u for u in new.instances if is_worker_unit(u)]
        states = read_units(self.installer.systemctl, workers)
        return [u for u in workers if states[u].active_state == "inactive"]

    def _say_stopped(self, stopped: list[str]) -> None:
        if stopped:
            self.say(f"not running, so not restarted (they run the new tag when started): "
                     f"{', '.join(stopped)}")

    def _show_plan(self, new: Prepared, from_tag: str, to_tag: str, units: list[str],
                   stopped: list[str], settings: UpgradeSettings) -> None:
        self.say(f"upgrade from image tag {from_tag} to {to_tag} "
                 f"(Tracardi {self.manifest.tracardi_version})")
        self._say_stopped(stopped)
        how = {"always": "pull", "missing": "pull unless on this host",
               "never": "require on this host"}[settings.pull]
        for image in new.images:
            self.say(f"{how}: {image}")
        self.say("install:")
        for line in self._install(new, (from_tag, to_tag), dry_run=True).lines:
            self.say(line)
        gate = f"running {settings.window:g} s on its new image without a restart"
        for unit in units:
            target = _target(unit, new)
            check = " and its liveness check passing" if target.liveness else ""
            self.say(f"restart {unit}, then wait for it: {gate}{check}")
        self.say(f"if one fails: install tag {from_tag} again, restart every worker "
                 "restarted so far, exit 3")

    def _pull(self, new: Prepared, to_tag: str, from_tag: str, policy: str) -> None:
        docker = self.installer.docker
        problems = []
        for image in new.images:
            if policy != "always" and _present(docker, image):
                self.say(f"{image} is on this host: not pulled")
            elif policy == "never":
                problems.append(f"{image} is not on this host (--pull never)")
            else:
                self.say(f"pulling {image}")
                try:
                    docker("pull", "--quiet", image)
                except CommandError as exc:
                    problems.append(str(exc))
        if problems:
            hint = {
                "always": "if the images are already on this host (docker load, or pulled "
                          "by hand), use --pull missing; for the commercial images run "
                          "tracardi-systemd login first",
                "missing": "put them on this host (docker load), or check the tag and "
                           "the registry (tracardi-systemd login for the commercial images)",
                "never": "put them on this host (docker pull, docker load) or use "
                         "--pull missing",
            }[policy]
            raise UpgradeError("\n".join(problems) + f"\nnot every image of tag {to_tag} "
                               f"could be had: no worker was restarted, they all still run "
                               f"{from_tag}; {hint}")

    def _install(self, prepared: Prepared, record: tuple[str, str],
                 dry_run: bool = False) -> Result:
        env_target = Path(self.manifest.env_file)
        request = InstallRequest.of(prepared, self.installer.root, Path(self.manifest.unit_dir),
                                    self.installer.on_disk(env_target), env_target)
        return self.installer.install(
            request, images=[], options=recorded(self._params(prepared.settings.tag)),
            tracardi_version=self.manifest.tracardi_version, enable=True, start=False,
            dry_run=dry_run, upgrade=record)

    def _restart_gated(self, units: list[str], prepared: Prepared) -> list[Verdict]:
        systemctl = self.installer.systemctl
        try:
            systemctl("reset-failed", *units)  # a unit past its start limit refuses restart
            systemctl("restart", *units)
        except CommandError as exc:
            return [Verdict(unit, False, f"it did not restart: {exc}") for unit in units]
        started = self.clock()
        try:
            shown = read_units(systemctl, units)
            gates = [Gate(_target(unit, prepared), self.times, started,
                          shown[unit].restarts) for unit in units]
            return watch(gates, systemctl, self.engine, self.probe, self.clock, self.sleep)
        except (CommandError, EngineError) as exc:
            return [Verdict(unit, False, f"systemd or Docker could not be asked: {exc}")
                    for unit in units]

    def _roll_back(self, failed: Verdict, upgraded: list[str], old: Prepared,
                   record: tuple[str, str], from_tag: str, to_tag: str) -> Outcome:
        self.say(f"{failed.unit} failed the gate on {to_tag}: {failed.reason}")
        self.say(f"rolling back: {', '.join(upgraded)} back to {from_tag}")
        try:
            self._install(old, record)
            verdicts = self._restart_gated(upgraded, old)
        except InstallError as exc:
            verdicts = [Verdict(unit, False, f"install of {from_tag} failed: {exc}")
                        for unit in upgraded]
        broken = [v for v in verdicts if not v.passed]
        fields = {"TRACARDI_UNIT": failed.unit, "TRACARDI_REASON": failed.reason}
        if broken:
            detail = "; ".join(f"{v.unit}: {v.reason}" for v in broken)
            message = (f"upgrade from image tag {from_tag} to {to_tag} failed ({failed.unit} "
                       f"{failed.reason}) and so did its rollback: {detail}")
            self._send(UpgradeEvent.ROLLBACK_FAILED, Priority.ERROR, message, from_tag,
                       to_tag, **fields)
            self.say(f"error: {message}")
            return Outcome("rollback failed", from_tag, to_tag, True, self.lines,
                       failed.unit, failed.reason)
        message = (f"upgrade from image tag {from_tag} to {to_tag} rolled back: {failed.unit} "
                   f"{failed.reason}; {len(upgraded)} worker unit(s) back on {from_tag}")
        self._send(UpgradeEvent.ROLLED_BACK, Priority.ERROR, message, from_tag, to_tag,
                   **fields)
        self.say(f"error: {message}")
        return Outcome("rolled back", from_tag, to_tag, True, self.lines, failed.unit,
                       failed.reason)

    def _send(self, event: UpgradeEvent, priority: Priority, message: str, from_tag: str,
              to_tag: str, **fields: str) -> None:
        self.journal.send(message, priority, event.value, SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
                          TRACARDI_FROM_TAG=from_tag, TRACARDI_TO_TAG=to_tag, **fields)


def _target(unit: str, prepared: Prepared) -> Target:
    worker = next(w for w in prepared.settings.workers if w.name == worker_of_unit(unit))
    liveness = worker.liveness if prepared.settings.liveness else None
    return Target(unit, f"{worker.image}:{prepared.settings.tag}", liveness)


def _present(docker: Callable[..., str], image: str) -> bool:
    try:
        docker("image", "inspect", "--format", "{{.Id}}", image)
    except CommandError:
        return False
    return True
