"""`upgrade`: every worker onto another image tag, one at a time, each behind a gate; when
one fails, every worker that is not on the image it ran before goes back to it.

Order: validate both tags' unit files, take the root's lock (install and uninstall wait
their turn), pull every image (nothing restarts when one cannot be had), record the
upgrade in flight and the image each worker runs in the manifest, install the new tag
through the Installer, run the new release's init (0.9+) gated, then restart the running
workers one after another, each gated (gate.py). A rollback points the old tag's
references back at the images they named, installs the old tag, runs the old init again
if the new one ran, and restarts every worker whose container is not on its old image,
whoever restarted it. A SIGINT, SIGTERM or SIGHUP rolls back the same way; a record left by
a killed upgrade is rolled back by the next `upgrade` before anything else. Each outcome
is a journal entry of its own MESSAGE_ID.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from tracardi_systemd.host.commands import PULL_TIMEOUT, CommandError, ContainerSource
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.host.journal import Journal, Priority
from tracardi_systemd.install.inflight import UpgradeInFlight, restore_images
from tracardi_systemd.install.manifest import Manifest, save_manifest
from tracardi_systemd.install.plan import InstallRequest
from tracardi_systemd.install.reuse import REUSED, recorded
from tracardi_systemd.install.transaction import Installer, InstallError, Result
from tracardi_systemd.names import INIT_UNIT, LABEL_MANAGED, is_worker_unit, worker_of_unit
from tracardi_systemd.observe.model import ContainerState
from tracardi_systemd.observe.read import ContainerReader, by_unit, read_units
from tracardi_systemd.render.prepare import Prepared, PrepareError, prepare
from tracardi_systemd.spec.catalog import image_tag_for
from tracardi_systemd.upgrade.gate import (
    POLL_SECONDS,
    Gate,
    GateTimes,
    Probe,
    Target,
    Verdict,
    liveness_probe,
    watch,
)
from tracardi_systemd.upgrade.signals import Interrupted, Signals


class UpgradeEvent(Enum):
    """Journal entries of `upgrade`; never change an id: alerts match on them."""

    STARTED = "4eedf3cf05c64fb5acabf80e656b6b07"
    DONE = "4562caa93f9b4a8f8f66faa6303dc1a5"
    ROLLED_BACK = "e7332238671c41d989ddb0f5288dc36a"
    ROLLBACK_FAILED = "b1d0037c94794e66a46374cdf8b4df4c"
    # An upgrade killed earlier (SIGKILL, power loss), rolled back by this one.
    RECOVERED = "0d64425d98334f899bd47dce2a419987"


SYSLOG_IDENTIFIER = "tracardi-systemd"
# Exit status per result: 1 is any refusal before a worker was restarted, 2 click's usage
# error.
EXIT_STATUS = {"done": 0, "unchanged": 0, "planned": 0, "rolled back": 3,
               "rollback failed": 4}
# A restart of init must not restart the workers that require it (Requires= propagates a
# restart): they move one by one behind their gates.
INIT_RESTART = ("restart", "--no-block", "--job-mode=ignore-dependencies", INIT_UNIT)
# `docker pull` lines worth passing on: one per layer done, and the image's digest.
PULL_MILESTONES = ("Pull complete", "Already exists", "Digest:", "Status:")


class UpgradeError(Exception):
    """Refused before any worker was restarted; the message says what to do."""


@dataclass(frozen=True)
class UpgradeSettings:
    window: float = 30.0
    start_timeout: float = 60.0
    liveness_timeout: float | None = None  # None: each check's own start period
    pull: str = "always"
    pull_timeout: float = PULL_TIMEOUT
    init_timeout: float = 1800.0

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
    workers: dict[str, dict[str, str]] = field(default_factory=dict)  # unit -> image, id

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.result]

    def to_json(self) -> str:
        return json.dumps({"changed": self.changed, "result": self.result,
                           "from_tag": self.from_tag, "to_tag": self.to_tag,
                           "failed_unit": self.failed_unit, "reason": self.reason,
                           "workers": self.workers, "lines": self.lines})


def installed_tag(manifest: Manifest) -> str:
    """The tag the units name: the operator's --image-tag, else the release's own."""
    return str(manifest.options.get("image_tag") or image_tag_for(manifest.tracardi_version))


def rollback_tag(manifest: Manifest) -> str:
    """The tag `upgrade --rollback` goes to; UpgradeError when there is none."""
    record = manifest.in_flight
    if record is not None:
        return record.from_tag  # a killed upgrade: back to where it started
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


@dataclass
class Move:
    """One move from a tag to another, and what a rollback of it needs."""

    from_tag: str
    to_tag: str
    new: Prepared
    old: Prepared
    record_before: tuple[str, str]  # the manifest's last-upgrade record before this one
    images: dict[str, str] = field(default_factory=dict)  # old reference -> image id
    init_moved: bool = False


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
        self.settings = UpgradeSettings()
        self.signals = Signals()
        self._say = say

    def say(self, line: str) -> None:
        self.lines.append(line)
        self._say(line)

    def run(self, to_tag: str, settings: UpgradeSettings, dry_run: bool = False) -> Outcome:
        with self.signals:
            try:
                return self._run(to_tag, settings, dry_run)
            except Interrupted as exc:  # before the move began: nothing to roll back
                self.say(f"{exc} before anything was changed")
                return Outcome("rolled back", installed_tag(self.manifest), to_tag, False,
                               self.lines, "", str(exc))

    def _run(self, to_tag: str, settings: UpgradeSettings, dry_run: bool) -> Outcome:
        self.settings = settings
        record = self.manifest.in_flight
        from_tag = record.from_tag if record else installed_tag(self.manifest)
        if to_tag == from_tag and record is None:
            self.say(f"the workers are already installed with image tag {to_tag}: "
                     "nothing to do")
            return Outcome("unchanged", from_tag, to_tag, False, self.lines)
        new, old = self._prepare(to_tag), self._prepare(from_tag)
        if dry_run:
            self._show_plan(new, from_tag, to_tag, self._running(new), settings, record)
            return Outcome("planned", from_tag, to_tag, True, self.lines)
        self._require_engine(from_tag)
        with self.installer.hold():
            self.manifest = self.installer.previous() or self.manifest
            record = self.manifest.in_flight
            if record is not None:
                with self.signals.shielded():
                    recovered = self._recover(record, old if record.from_tag == from_tag
                                              else self._prepare(record.from_tag))
                if recovered.result != "done" or to_tag == record.from_tag or \
                        self.signals.received:
                    return recovered
                from_tag, old = record.from_tag, self._prepare(record.from_tag)
            move = Move(from_tag, to_tag, new, old, (self.manifest.previous_image_tag,
                                                     self.manifest.upgraded_image_tag))
            try:
                return self._move(move)
            except Interrupted as exc:
                return self._roll_back(move, "", str(exc))

    def _move(self, move: Move) -> Outcome:
        running = self._running(move.new)
        self._say_stopped(move.new, running)
        self._pull(move.new, move.to_tag, move.from_tag, self.settings.pull)
        move.images, per_unit = self._images_before(move.old)
        with self.signals.deferred():  # the record is there before any unit file changes
            self._save(upgrade=UpgradeInFlight.here(move.from_tag, move.to_tag,
                                                    move.images).to_dict(), images=per_unit)
        self._send(UpgradeEvent.STARTED, Priority.NOTICE,
                   f"upgrade of {len(running)} Tracardi worker unit(s) from image tag "
                   f"{move.from_tag} to {move.to_tag} started", move.from_tag, move.to_tag)
        try:
            with self.signals.deferred():
                self._install(move.new, (move.from_tag, move.to_tag))
        except InstallError as exc:
            self._save(upgrade={})
            raise UpgradeError(f"{exc}\nno worker was restarted") from None
        init = self._run_init(move.new, move.to_tag)
        if init is not None:
            move.init_moved = True
            if not init.passed:
                return self._roll_back(move, init.unit, init.reason)
            self.say(f"{INIT_UNIT} ran to its end on {move.to_tag}")
        for unit in running:
            self.say(f"restarting {unit} on {move.to_tag}")
            verdict = self._restart_gated([unit], move.new)[0]
            if not verdict.passed:
                return self._roll_back(move, verdict.unit, verdict.reason)
            self.say(f"{unit} passed the gate")
        workers = self._now_running(move.new)
        with self.signals.deferred():
            self._save(upgrade={}, images=self._images_record(workers, move.to_tag))
        self._send(UpgradeEvent.DONE, Priority.NOTICE,
                   f"upgrade from image tag {move.from_tag} to {move.to_tag} done: "
                   f"{len(running)} worker unit(s) passed the gate", move.from_tag, move.to_tag)
        self.say(f"upgraded from {move.from_tag} to {move.to_tag}")
        return Outcome("done", move.from_tag, move.to_tag, True, self.lines,
                       workers=_shown(workers))

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

    def _running(self, prepared: Prepared) -> list[str]:
        """The worker units to restart: all but those an operator stopped."""
        workers = _workers(prepared)
        states = read_units(self.installer.systemctl, workers)
        return [u for u in workers if states[u].active_state != "inactive"]

    def _say_stopped(self, prepared: Prepared, running: list[str]) -> None:
        stopped = [u for u in _workers(prepared) if u not in running]
        if stopped:
            self.say(f"not running, so not restarted (they run the new tag when started): "
                     f"{', '.join(stopped)}")

    def _show_plan(self, new: Prepared, from_tag: str, to_tag: str, units: list[str],
                   settings: UpgradeSettings, record: UpgradeInFlight | None) -> None:
        if record is not None and record.running:
            self.say(f"{record.describe()} is running (pid {record.pid}): this one will be "
                     "refused until it ends")
        elif record is not None:
            self.say(f"{record.describe()} was interrupted: first every worker goes back "
                     f"to {record.from_tag}, on the image it ran before")
        self.say(f"upgrade from image tag {from_tag} to {to_tag} "
                 f"(Tracardi {self.manifest.tracardi_version})")
        self._say_stopped(new, units)
        how = {"always": "pull", "missing": "pull unless on this host",
               "never": "require on this host"}[settings.pull]
        for image in new.images:
            self.say(f"{how}: {image}")
        self.say("install:")
        for line in self._install(new, (from_tag, to_tag), dry_run=True).lines:
            self.say(line)
        if INIT_UNIT in new.instances:
            self.say(f"run {INIT_UNIT} on {to_tag} (no worker restarts with it), then wait "
                     f"up to {settings.init_timeout:g} s for it to succeed")
        gate = f"running {settings.window:g} s on its new image without a restart"
        for unit in units:
            target = _target(unit, new)
            check = " and its liveness check passing" if target.liveness else ""
            self.say(f"restart {unit}, then wait for it: {gate}{check}")
        self.say(f"if one fails: install tag {from_tag} again, restart every worker not "
                 "on the image it ran before, exit 3")

    def _pull(self, new: Prepared, to_tag: str, from_tag: str, policy: str) -> None:
        docker = self.installer.docker
        problems = []
        for image in new.images:
            if policy != "always" and docker.has_image(image):
                self.say(f"{image} is on this host: not pulled")
            elif policy == "never":
                problems.append(f"{image} is not on this host (--pull never)")
            else:
                self.say(f"pulling {image}")
                try:
                    docker.pull(image, self.settings.pull_timeout, self._pull_progress(image))
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

    def _pull_progress(self, image: str) -> Callable[[str], None]:
        def progress(line: str) -> None:
            if any(mark in line for mark in PULL_MILESTONES):
                self._say(f"  {image}: {line}")
        return progress

    def _images_before(self, old: Prepared) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """What the workers run now: per reference of the old tag its image id (the one a
        running worker has, else the one the tag names), and per unit the manifest's
        record of it."""
        running = self._now_running(old)
        ids: dict[str, str] = {}
        for container in running.values():
            if container.image_id:
                ids.setdefault(container.image, container.image_id)
        for image in old.images:
            if image not in ids:
                found = _inspect(self.installer.docker, image)
                if found:
                    ids[image] = found[0]
        return ids, self._images_record(running, old.settings.tag)

    def _images_record(self, running: dict[str, ContainerState],
                       tag: str) -> dict[str, dict[str, str]]:
        digests: dict[str, str] = {}
        record = {}
        for unit, container in running.items():
            if not container.image_id:
                continue
            if container.image_id not in digests:
                found = _inspect(self.installer.docker, container.image_id)
                digests[container.image_id] = found[1] if found else ""
            record[unit] = {"tag": tag, "id": container.image_id,
                            "digest": digests[container.image_id]}
        return record

    def _now_running(self, prepared: Prepared) -> dict[str, ContainerState]:
        """The running containers of the worker units, by unit."""
        try:
            found = by_unit(ContainerReader(self.engine).read())
        except EngineError:
            return {}
        return {u: c for u, c in found.items() if u in _workers(prepared) and c.running}

    def _save(self, **changes: object) -> None:
        manifest = self.installer.previous()
        assert manifest is not None
        self.manifest = replace(manifest, **changes)  # type: ignore[arg-type]
        save_manifest(self.installer.root, self.manifest)

    def _install(self, prepared: Prepared, record: tuple[str, str],
                 dry_run: bool = False) -> Result:
        env_target = Path(self.manifest.env_file)
        request = InstallRequest.of(prepared, self.installer.root, Path(self.manifest.unit_dir),
                                    self.installer.on_disk(env_target), env_target)
        return self.installer.install(
            request, images=[], options=recorded(self._params(prepared.settings.tag)),
            tracardi_version=self.manifest.tracardi_version, enable=True, start=False,
            dry_run=dry_run, upgrade=record)

    def _run_init(self, prepared: Prepared, tag: str) -> Verdict | None:
        """Run the release's init (0.9+) on `tag` before any worker moves, and wait for it
        to succeed; None when there is no init, or it is stopped (then so are the workers
        that need it, and it runs the new tag when they start)."""
        if INIT_UNIT not in prepared.instances:
            return None
        systemctl = self.installer.systemctl
        before = read_units(systemctl, [INIT_UNIT])[INIT_UNIT]
        if before.active_state == "inactive":
            return None
        self.say(f"running {INIT_UNIT} on {tag}")
        try:
            if before.active_state == "failed":
                systemctl("reset-failed", INIT_UNIT)
            systemctl(*INIT_RESTART)
            deadline = self.clock() + self.settings.init_timeout
            while True:
                now = read_units(systemctl, [INIT_UNIT])[INIT_UNIT]
                if now.active_state == "failed":
                    return Verdict(INIT_UNIT, False, f"it failed on {tag} ({now.result})")
                if now.active_state == "active" and now.active_since_usec > \
                        before.active_since_usec:
                    return Verdict(INIT_UNIT, True)
                if self.clock() > deadline:
                    return Verdict(INIT_UNIT, False, f"it did not finish within "
                                   f"{self.settings.init_timeout:g} s on {tag}")
                self.sleep(POLL_SECONDS)
        except CommandError as exc:
            return Verdict(INIT_UNIT, False, f"systemd could not run it: {exc}")

    def _restart_gated(self, units: list[str], prepared: Prepared,
                       images: dict[str, str] | None = None) -> list[Verdict]:
        """Restart `units` and gate them; `images`: the image id each reference must run."""
        systemctl = self.installer.systemctl
        try:
            systemctl("reset-failed", *units)  # a unit past its start limit refuses restart
            systemctl("restart", *units)
        except CommandError as exc:
            return [Verdict(unit, False, f"it did not restart: {exc}") for unit in units]
        started = self.clock()
        try:
            shown = read_units(systemctl, units)
            gates = [Gate(_target(unit, prepared, images), self.settings.times, started,
                          shown[unit].restarts) for unit in units]
            return watch(gates, systemctl, self.engine, self.probe, self.clock, self.sleep)
        except (CommandError, EngineError) as exc:
            return [Verdict(unit, False, f"systemd or Docker could not be asked: {exc}")
                    for unit in units]

    def _off_image(self, old: Prepared, images: dict[str, str]) -> list[str]:
        """The worker units that run, or try to run, anything but the image they ran
        before the upgrade: those the upgrade restarted, and any that crashed, or that the
        agent or a timer restarted, onto the new tag meanwhile."""
        running = self._running(old)
        containers = self._now_running(old)
        off = []
        for unit in running:
            target = _target(unit, old, images)
            container = containers.get(unit)
            if container is None or container.image != target.image or \
                    target.image_id not in ("", container.image_id):
                off.append(unit)
        return off

    def _roll_back(self, move: Move, failed_unit: str, reason: str) -> Outcome:
        """Every worker back on the image it ran before; the manifest as before."""
        with self.signals.shielded():
            if failed_unit:
                self.say(f"{failed_unit} failed the gate on {move.to_tag}: {reason}")
            else:
                self.say(f"{reason}: rolling back")
            verdicts = self._converge(move.old, move.from_tag, move.images, move.init_moved)
            self._save(upgrade={}, previous_image_tag=move.record_before[0],
                       upgraded_image_tag=move.record_before[1])
            workers = self._now_running(move.old)
            self._save(images=self._images_record(workers, move.from_tag))
        what = f"{failed_unit} {reason}" if failed_unit else reason
        return self._end(
            verdicts, move.from_tag, move.to_tag, workers, failed_unit, reason,
            ok=("rolled back", UpgradeEvent.ROLLED_BACK, Priority.ERROR,
                f"upgrade from image tag {move.from_tag} to {move.to_tag} rolled back: "
                f"{what}; every running worker on {move.from_tag} "
                f"({len(workers)} worker unit(s))"),
            failed=f"upgrade from image tag {move.from_tag} to {move.to_tag} failed "
                   f"({what}) and so did its rollback")

    def _converge(self, old: Prepared, tag: str, images: dict[str, str],
                  init_moved: bool) -> list[Verdict]:
        """Point the old references at their images again, install `tag`, run the old init
        again when the new one ran, restart every worker not on its old image, gated."""
        for line in restore_images(self.installer.docker, images):
            self.say(line)
        try:
            self._install(old, (self.manifest.previous_image_tag,
                                self.manifest.upgraded_image_tag))
        except InstallError as exc:
            return [Verdict("install", False, f"install of {tag} failed: {exc}")]
        verdicts = []
        if init_moved:
            init = self._run_init(old, tag)
            if init is not None:
                verdicts.append(init)
        off = self._off_image(old, images)
        if off:
            self.say(f"back to {tag}: {', '.join(off)}")
            verdicts += self._restart_gated(off, old, images)
        for unit, container in sorted(self._now_running(old).items()):
            self.say(f"{unit} runs {container.image} ({container.image_id[:19]})")
        return verdicts

    def _recover(self, record: UpgradeInFlight, old: Prepared) -> Outcome:
        """A killed upgrade left its record: roll it back before anything else."""
        self.say(f"{record.describe()} was interrupted (pid {record.pid} is gone): every "
                 f"worker goes back to {record.from_tag}, on the image it ran before")
        verdicts = self._converge(old, record.from_tag, record.images, init_moved=True)
        workers = self._now_running(old)
        self._save(upgrade={}, previous_image_tag="", upgraded_image_tag="",
                   images=self._images_record(workers, record.from_tag))
        return self._end(
            verdicts, record.from_tag, record.to_tag, workers, reason="interrupted",
            ok=("done", UpgradeEvent.RECOVERED, Priority.WARNING,
                f"{record.describe()} was interrupted (pid {record.pid} gone); rolled "
                f"back: every running worker on {record.from_tag}"),
            failed=f"{record.describe()} was interrupted and its rollback failed")

    def _end(self, verdicts: list[Verdict], from_tag: str, to_tag: str,
             workers: dict[str, ContainerState], failed_unit: str = "", reason: str = "", *,
             ok: tuple[str, UpgradeEvent, Priority, str], failed: str) -> Outcome:
        """The outcome of a rollback, told to the journal and on stderr: `ok` (result,
        event, priority, message) when every verdict passed, else `failed` with them."""
        fields = {"TRACARDI_UNIT": failed_unit, "TRACARDI_REASON": reason}
        broken = [v for v in verdicts if not v.passed]
        result, event, priority, message = ok
        if broken:
            result, event, priority = "rollback failed", UpgradeEvent.ROLLBACK_FAILED, \
                Priority.ERROR
            message = f"{failed}: " + "; ".join(f"{v.unit}: {v.reason}" for v in broken)
        self._send(event, priority, message, from_tag, to_tag, **fields)
        self.say(f"error: {message}" if priority is Priority.ERROR else message)
        return Outcome(result, from_tag, to_tag, True, self.lines, failed_unit, reason,
                       _shown(workers))

    def _send(self, event: UpgradeEvent, priority: Priority, message: str, from_tag: str,
              to_tag: str, **fields: str) -> None:
        self.journal.send(message, priority, event.value, SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
                          TRACARDI_FROM_TAG=from_tag, TRACARDI_TO_TAG=to_tag, **fields)


def _workers(prepared: Prepared) -> list[str]:
    return [u for u in prepared.instances if is_worker_unit(u)]


def _target(unit: str, prepared: Prepared, images: dict[str, str] | None = None) -> Target:
    worker = next(w for w in prepared.settings.workers if w.name == worker_of_unit(unit))
    liveness = worker.liveness if prepared.settings.liveness else None
    image = prepared.settings.image_of(worker)  # as the container lists it (docker.io/...)
    return Target(unit, image, liveness, (images or {}).get(image, ""))


def _shown(workers: dict[str, ContainerState]) -> dict[str, dict[str, str]]:
    return {unit: {"image": c.image, "image_id": c.image_id}
            for unit, c in sorted(workers.items())}


def _inspect(docker: Callable[..., str], image: str) -> tuple[str, str] | None:
    """An image's id (sha256:..., as the Engine API lists it; podman's has no prefix) and its
    first repo digest ("" when it has none); None if absent."""
    try:
        out = docker("image", "inspect", "--format",
                     "{{.Id}} {{range .RepoDigests}}{{.}} {{end}}", image)
    except CommandError:
        return None
    words = out.split()
    if not words:
        return None
    image_id = words[0] if words[0].startswith("sha256:") else f"sha256:{words[0]}"
    return image_id, words[1] if len(words) > 1 else ""

