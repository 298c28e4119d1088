"""`upgrade` against an offline root and a scripted host: each worker runs the image its
installed unit file names, and an image of a tag in `crashing` crash-loops."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeClock, inspected, listed, unit_props
from samples import CLEAN_ENV

from tracardi_systemd.cli.main import main
from tracardi_systemd.host.commands import CommandError, Docker, stream
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.install import transaction
from tracardi_systemd.install.lock import host_lock
from tracardi_systemd.install.manifest import Manifest, load_manifest, save_manifest
from tracardi_systemd.install.plan import InstallRequest
from tracardi_systemd.install.reuse import recorded, reuse_previous
from tracardi_systemd.install.transaction import Installer, InstallError
from tracardi_systemd.names import INIT_UNIT
from tracardi_systemd.observe.status import collect
from tracardi_systemd.render.prepare import prepare
from tracardi_systemd.upgrade.run import (
    Upgrade,
    UpgradeError,
    UpgradeEvent,
    UpgradeSettings,
    installed_tag,
    rollback_tag,
)

WORKERS = ["tracardi-update.service", "tracardi-segmentation.service",
           "tracardi-scheduler.service", "tracardi-post-collection.service",
           "tracardi-trigger.service"]
FAST = UpgradeSettings(window=2, start_timeout=5, liveness_timeout=3, pull="always")
_IMAGE = re.compile(r"(tracardi/[a-z-]+:[A-Za-z0-9_.-]+)\s*$", re.M)


class Host:
    """systemctl and docker of a host whose containers run what the unit files say."""

    def __init__(self, root: Path, crashing: tuple[str, ...] = (), on_host: tuple[str, ...] = (),
                 unpullable: tuple[str, ...] = (), units: list[str] = WORKERS):
        self.root = root
        self.crashing = crashing  # images that exit at once
        self.on_host = set(on_host)
        self.unpullable = unpullable
        self.ids: dict[str, str] = {}  # image reference -> the image id it names
        self.state = {u: {"active": "active", "restarts": 0, "image": self.image_of(u), "n": 0,
                          "id": self.id_of(self.image_of(u))}
                      for u in units}
        self.calls: list[tuple[str, ...]] = []
        self.program = "/usr/bin/docker"
        self.after_restart: Callable[[str], None] = lambda unit: None
        # tracardi-init.service (0.9+): active since `since`, running `image`
        init = root / "etc/systemd/system" / INIT_UNIT
        self.init = {"active": "active", "since": 100,
                     "image": self.image_of(INIT_UNIT) if init.exists() else ""}

    def id_of(self, ref: str) -> str:
        return self.ids.setdefault(ref, image_id(ref))

    def repoint(self, ref: str, what: str) -> None:
        """`docker tag` of another image to `ref` (a moved tag)."""
        self.ids[ref] = image_id(what)

    def image_of(self, unit: str) -> str:
        text = (self.root / "etc/systemd/system" / unit).read_text()
        return _IMAGE.findall(text.split("ExecStop=")[0])[-1]

    # systemctl
    def __call__(self, *args: str, **_: object) -> str:
        self.calls.append(args)
        if args[:4] == ("restart", "--no-block", "--job-mode=ignore-dependencies", INIT_UNIT):
            image = self.image_of(INIT_UNIT)
            failed = image in self.crashing
            self.init.update(active="failed" if failed else "active", image=image,
                             since=self.init["since"] + (0 if failed else 1))
        elif args[0] in ("restart", "try-restart"):
            for unit in args[1:]:
                self.start(unit)
            for unit in args[1:]:
                self.after_restart(unit)
        if args[:2] == ("image", "inspect"):
            ref = args[-1]
            if ref.startswith("sha256:"):
                return f"{ref} {ref[7:19]}@sha256:{ref[7:]}\n"
            if ref not in self.on_host:
                raise CommandError(f"docker image inspect: No such image: {ref}")
            return f"{self.id_of(ref)}\n"
        if args[0] == "tag":
            self.ids[args[2]] = args[1]
        return ""

    def start(self, unit: str) -> None:
        """The unit's container, on what its file names now (a restart by anyone)."""
        state = self.state[unit]
        image = self.image_of(unit)
        state.update(active="active", image=image, id=self.id_of(image), n=state["n"] + 1)

    has_image = Docker.has_image  # the real one, on this fake's `docker image inspect`

    def pull(self, image: str, timeout: float | None = None, on_line=None) -> None:
        self.calls.append(("pull", image))
        if image in self.unpullable:
            raise CommandError(f"docker pull {image} failed: dial tcp: no route")
        on_line("abc123: Pull complete")
        on_line("abc123: Downloading 1MB/20MB")
        self.on_host.add(image)

    def show(self, units, properties):
        shown = {}
        for unit in units:
            state = self.state.get(unit)
            if unit == INIT_UNIT:
                shown[unit] = dict(unit_props(self.init["active"], sub="exited"), Id=unit,
                                   ActiveEnterTimestampMonotonic=str(self.init["since"]),
                                   Result="exit-code" if self.init["active"] == "failed"
                                   else "success")
                continue
            if state is None:
                shown[unit] = dict(unit_props(), Id=unit)
                continue
            if state["active"] == "active" and state["image"] in self.crashing:
                state["restarts"] += 1
            shown[unit] = dict(unit_props(state["active"], restarts=state["restarts"],
                                          sub="running" if state["active"] == "active"
                                          else "dead"), Id=unit)
        return shown

    def daemon_reload(self) -> None:
        pass

    def enable(self, units) -> None:
        pass

    def disable(self, units, now: bool = False) -> None:
        pass

    def running(self) -> list[dict]:
        return [inspected(u, cid=f"{u}-{s['n']}", image=s["image"])
                for u, s in self.state.items()
                if s["active"] == "active" and s["image"] not in self.crashing]

    def containers(self, label: str, all: bool = True) -> list[dict]:
        return [listed(entry) | {"ImageID": self.state[entry["Config"]["Labels"][
            "tracardi.unit"]]["id"]} for entry in self.running()]

    def runs(self) -> dict[str, tuple[str, str]]:
        """Each worker unit's (image reference, image id)."""
        return {u: (s["image"], s["id"]) for u, s in self.state.items()}

    def inspect(self, container: str) -> dict:
        return next(entry for entry in self.running() if entry["Id"] == container)

    def remove(self, container: str, force: bool = True) -> bool:
        return True

    def restarted(self) -> list[tuple[str, ...]]:
        return [c[1:] for c in self.calls if c[0] == "restart"]


def image_id(what: str) -> str:
    return "sha256:" + hashlib.sha256(what.encode()).hexdigest()


class Journal:
    def __init__(self):
        self.entries: list[dict] = []

    def send(self, message, priority, message_id, **fields):
        self.entries.append({"MESSAGE": message, "MESSAGE_ID": message_id, **fields})

    def ids(self) -> list[str]:
        return [e["MESSAGE_ID"] for e in self.entries]


@pytest.fixture
def root(tmp_path, write_env) -> Path:
    root = tmp_path / "root"
    env = write_env(CLEAN_ENV)
    result = CliRunner().invoke(main, ["install", "--root", str(root), "--env-file", str(env)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (root / "var/lib/tracardi-systemd").mkdir(parents=True, exist_ok=True)
    return root


def upgrade(root: Path, host: Host, journal: Journal | None = None,
            dead_tag: str = "") -> Upgrade:
    """An Upgrade on `host`; images of `dead_tag` fail their liveness check."""
    clock = FakeClock()
    return Upgrade(Installer(root, host, host), journal or Journal(), lambda line: None, host,
                   probe=lambda target: not target.image.endswith(f":{dead_tag}"),
                   clock=clock, sleep=clock.advance)


def tags(root: Path) -> set[str]:
    return {Host(root).image_of(u).rsplit(":", 1)[1] for u in WORKERS}


def test_upgrade_restarts_one_worker_at_a_time_and_records_both_tags(root):
    host, journal = Host(root), Journal()

    outcome = upgrade(root, host, journal).run("0.8.2", FAST)

    assert (outcome.result, outcome.exit_status, outcome.changed) == ("done", 0, True)
    assert host.restarted() == [(u,) for u in WORKERS]
    # every image of the release, the heartbeat job's too, each once
    assert [c[1] for c in host.calls if c[0] == "pull"] == [
        *(host.image_of(u) for u in WORKERS), "tracardi/com-heartbeat-job:0.8.2"]
    assert tags(root) == {"0.8.2"}
    manifest = load_manifest(root)
    assert manifest.options["image_tag"] == "0.8.2"
    assert (manifest.previous_image_tag, manifest.upgraded_image_tag) == ("0.8.1", "0.8.2")
    assert journal.ids() == [UpgradeEvent.STARTED.value, UpgradeEvent.DONE.value]
    assert journal.entries[0]["TRACARDI_TO_TAG"] == "0.8.2"
    assert rollback_tag(manifest) == "0.8.1"


def test_a_crash_looping_worker_puts_every_upgraded_worker_back(root):
    host = Host(root, crashing=("tracardi/com-tracardi-scheduler-worker:0.8.2",))
    journal = Journal()

    outcome = upgrade(root, host, journal).run("0.8.2", FAST)

    assert (outcome.result, outcome.exit_status) == ("rolled back", 3)
    assert outcome.failed_unit == "tracardi-scheduler.service"
    assert "crash-looping" in outcome.reason
    first_three = tuple(WORKERS[:3])
    assert host.restarted() == [(u,) for u in first_three] + [first_three]
    assert tags(root) == {"0.8.1"}
    assert {host.state[u]["image"].rsplit(":", 1)[1] for u in WORKERS} == {"0.8.1"}
    manifest = load_manifest(root)
    assert "image_tag" in manifest.options and manifest.options["image_tag"] == "0.8.1"
    assert (manifest.previous_image_tag, manifest.upgraded_image_tag) == ("", "")
    assert journal.ids() == [UpgradeEvent.STARTED.value, UpgradeEvent.ROLLED_BACK.value]
    assert journal.entries[1]["TRACARDI_UNIT"] == "tracardi-scheduler.service"
    assert "rolled back" in outcome.lines[-1] and outcome.lines[-1].startswith("error:")


def test_a_failing_liveness_check_rolls_back(root):
    outcome = upgrade(root, Host(root), dead_tag="0.8.2").run("0.8.2", FAST)

    assert outcome.result == "rolled back"
    assert outcome.failed_unit == "tracardi-update.service"
    assert "liveness check did not pass within 3.0 s" in outcome.reason


def test_a_rollback_that_fails_too_says_so(root):
    broken = tuple(f"{image}:{tag}" for image in ("tracardi/update-worker",
                                                   "tracardi/com-tracardi-segmentation-worker")
                   for tag in ("0.8.1", "0.8.2"))
    host, journal = Host(root, crashing=broken), Journal()

    outcome = upgrade(root, host, journal).run("0.8.2", FAST)

    assert (outcome.result, outcome.exit_status) == ("rollback failed", 4)
    assert journal.ids()[-1] == UpgradeEvent.ROLLBACK_FAILED.value
    assert "tracardi-update.service" in outcome.lines[-1]


def test_docker_failing_to_answer_during_the_gate_rolls_back(root):
    host = Host(root)
    answers = host.containers

    def containers(label, all=True):
        if host.restarted() == [(u,) for u in WORKERS[:2]]:
            raise EngineError("GET /containers/json", "nothing listens on "
                              "/var/run/docker.sock: is dockerd running?")
        return answers(label)

    host.containers = containers

    outcome = upgrade(root, host).run("0.8.2", FAST)

    assert (outcome.result, outcome.failed_unit) == ("rolled back", WORKERS[1])
    assert "could not be asked: GET /containers/json: nothing listens" in outcome.reason
    assert tags(root) == {"0.8.1"}


def test_a_dockerd_that_refuses_our_api_version_stops_it_before_anything_changes(root):
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    host, journal = Host(root), Journal()
    refusal = ("dockerd 30.0.0 refuses Engine API versions older than 1.46 (its "
               "MinAPIVersion), and the newest this tracardi-systemd speaks is 1.45")

    def containers(label, all=True):
        raise EngineError("GET /version", refusal)

    host.containers = containers

    with pytest.raises(UpgradeError) as caught:
        upgrade(root, host, journal).run("0.8.2", FAST)

    assert str(caught.value) == (f"Docker's Engine API does not answer, so no worker could "
                                 f"be gated: GET /version: {refusal}\nno worker was "
                                 "restarted, they all still run 0.8.1")
    assert host.restarted() == [] and journal.entries == []
    assert not any(call[0] == "pull" for call in host.calls)
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before


def test_a_pull_that_fails_restarts_nothing_and_changes_nothing(root):
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    host = Host(root, unpullable=("tracardi/com-tracardi-trigger-worker:0.8.2",))
    journal = Journal()

    with pytest.raises(UpgradeError) as caught:
        upgrade(root, host, journal).run("0.8.2", FAST)

    message = str(caught.value)
    assert "tracardi/com-tracardi-trigger-worker:0.8.2" in message
    assert "no worker was restarted, they all still run 0.8.1" in message
    assert "--pull missing" in message
    assert host.restarted() == [] and journal.entries == []
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before


def test_pull_missing_takes_images_on_the_host_and_never_requires_them(root):
    images = [Host(root).image_of(u).replace("0.8.1", "0.8.2") for u in WORKERS]
    images.append("tracardi/com-heartbeat-job:0.8.2")
    host = Host(root, on_host=tuple(images))
    settings = UpgradeSettings(2, 5, 3, pull="missing")
    assert upgrade(root, host).run("0.8.2", settings).result == "done"
    assert not [c for c in host.calls if c[0] == "pull"]

    host = Host(root, on_host=tuple(images[:-2]))
    with pytest.raises(UpgradeError, match=r"trigger-worker:0.8.1 is not on this host") as err:
        upgrade(root, host).run("0.8.1", UpgradeSettings(2, 5, 3, pull="never"))
    assert "or use --pull missing" in str(err.value)


def test_stopped_workers_stay_stopped(root):
    host = Host(root)
    host.state["tracardi-trigger.service"]["active"] = "inactive"

    outcome = upgrade(root, host).run("0.8.2", FAST)

    assert outcome.result == "done"
    assert ("tracardi-trigger.service",) not in host.restarted()
    assert tags(root) == {"0.8.2"}


def test_dry_run_shows_the_plan_and_changes_nothing(root):
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    host = Host(root)

    outcome = upgrade(root, host).run("0.8.2", FAST, dry_run=True)

    text = "\n".join(outcome.lines)
    assert outcome.result == "planned"
    assert "pull: tracardi/update-worker:0.8.2" in text
    assert "+    tracardi/update-worker:0.8.2" in text  # the unit file's diff
    assert "restart tracardi-update.service, then wait for it: running 2 s on its new image " \
           "without a restart and its liveness check passing" in text
    assert "if one fails: install tag 0.8.1 again" in text
    assert host.calls == []
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before


def test_same_tag_is_nothing_to_do(root):
    host = Host(root)
    outcome = upgrade(root, host).run("0.8.1", FAST)
    assert (outcome.result, outcome.changed, host.calls) == ("unchanged", False, [])


def test_rollback_later_goes_back_and_forth_but_not_past_a_hand_install(root, write_env):
    upgrade(root, Host(root)).run("0.8.2", FAST)
    back = upgrade(root, Host(root))
    assert back.run(rollback_tag(back.manifest), FAST).result == "done"
    assert tags(root) == {"0.8.1"}
    assert rollback_tag(load_manifest(root)) == "0.8.2"

    env = write_env(CLEAN_ENV, name="again")
    CliRunner().invoke(main, ["install", "--root", str(root), "--env-file", str(env),
                              "--image-tag", "0.9.0-rc1"], catch_exceptions=False)
    with pytest.raises(UpgradeError, match=r"the workers run tag 0\.9\.0-rc1, set by install"):
        rollback_tag(load_manifest(root))


def test_rollback_without_an_upgrade_is_refused(root):
    with pytest.raises(UpgradeError, match="no upgrade is recorded"):
        rollback_tag(load_manifest(root))


def test_cli_wants_exactly_one_of_image_tag_and_rollback():
    runner = CliRunner()
    both = runner.invoke(main, ["upgrade", "--image-tag", "1", "--rollback"])
    neither = runner.invoke(main, ["upgrade"])
    for result in (both, neither):
        assert result.exit_code == 2
        assert "give either --image-tag TAG or --rollback" in result.output


def test_outcome_json_is_what_ansible_reads(root):
    outcome = upgrade(root, Host(root)).run("0.8.2", FAST)
    data = json.loads(outcome.to_json())
    assert data["changed"] is True and data["result"] == "done"
    assert (data["from_tag"], data["to_tag"]) == ("0.8.1", "0.8.2")


# --- issue 22: upgrades that cannot strand a worker ------------------------------------------

V12_WORKERS = ["tracardi-background-function.service", "tracardi-background-logger.service",
               "tracardi-background-destination.service", "tracardi-apm.service",
               "tracardi-update.service"]
V12_ENV = Path(__file__).resolve().parent.parent / "examples" / "env-docker-1.2.example"


@pytest.fixture
def root12(tmp_path) -> Path:
    root = tmp_path / "root12"
    result = CliRunner().invoke(main, ["install", "--root", str(root), "--env-file",
                                       str(V12_ENV), "--tracardi-version", "1.2.0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root


def test_installed_tag_is_the_releases_own_tag_unless_the_operator_chose_one():
    manifest = Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                        tracardi_version="1.2.0", units=[])
    assert installed_tag(manifest) == "1.2.x"
    assert installed_tag(replace(manifest, tracardi_version="0.8.2")) == "0.8.2.1"
    assert installed_tag(replace(manifest, options={"image_tag": "1.2.3"})) == "1.2.3"


def test_a_default_12_host_rolls_back_to_12x_and_knows_12x_is_no_upgrade(root12):
    host = Host(root12, units=V12_WORKERS,
                crashing=("tracardi/background-worker:1.2.4",))
    before = host.runs()

    assert upgrade(root12, host).run("1.2.x", FAST).result == "unchanged"
    outcome = upgrade(root12, host).run("1.2.4", FAST)

    assert (outcome.result, outcome.from_tag) == ("rolled back", "1.2.x")
    assert tags_of(root12, V12_WORKERS) == {"1.2.x"}
    assert host.runs() == before
    assert host.image_of(INIT_UNIT) == "tracardi/init:1.2.x"


def test_rollback_runs_the_image_each_worker_ran_even_after_its_tag_moved(root):
    host = Host(root, crashing=("tracardi/com-tracardi-scheduler-worker:0.8.2",))
    before = host.runs()
    moved = "tracardi/update-worker:0.8.1"

    def tag_moved_meanwhile(unit: str) -> None:
        if unit == WORKERS[0]:  # e.g. `docker pull` of a moving tag, or `docker tag`
            host.repoint(moved, "another image")

    host.after_restart = tag_moved_meanwhile
    outcome = upgrade(root, host).run("0.8.2", FAST)

    assert outcome.result == "rolled back"
    assert host.runs() == before  # the update worker too: its old image, not the moved tag
    assert ("tag", before[WORKERS[0]][1], moved) in host.calls
    assert outcome.workers[WORKERS[0]] == {"image": moved, "image_id": before[WORKERS[0]][1]}
    assert f"{WORKERS[0]} runs {moved} ({before[WORKERS[0]][1][:19]})" in outcome.lines


def test_the_manifest_records_each_units_tag_and_image_and_status_shows_them(root):
    host = Host(root)

    upgrade(root, host).run("0.8.2", FAST)

    manifest = load_manifest(root)
    image = host.runs()[WORKERS[0]][1]
    assert manifest.images[WORKERS[0]] == {
        "tag": "0.8.2", "id": image, "digest": f"{image[7:19]}@sha256:{image[7:]}"}
    assert set(manifest.images) == set(WORKERS)
    row = next(w for w in collect(manifest, host, host).workers if w.unit == WORKERS[0])
    assert (row.image_id, row.digest) == (image, manifest.images[WORKERS[0]]["digest"])
    assert json.loads(collect(manifest, host, host).to_json())["workers"][0]["image_id"] == image


def test_a_worker_that_crashed_onto_the_new_tag_during_the_upgrade_is_rolled_back_too(root):
    """Systemd restarted trigger (not yet upgraded) while segmentation was gated: its unit
    file already named the new tag. Then post-collection fails its gate."""
    host = Host(root, crashing=("tracardi/com-tracardi-coping-worker:0.8.2",))
    before = host.runs()
    trigger = "tracardi-trigger.service"

    def crash_of_trigger(unit: str) -> None:
        if unit == "tracardi-segmentation.service":
            host.start(trigger)  # Restart=always, an agent restart, a timer's job: all alike

    host.after_restart = crash_of_trigger
    outcome = upgrade(root, host).run("0.8.2", FAST)

    assert outcome.result == "rolled back"
    assert outcome.failed_unit == "tracardi-post-collection.service"
    assert host.runs() == before
    assert trigger in host.restarted()[-1]  # restarted by the rollback, not by upgrade
    assert set(outcome.workers) == set(WORKERS)
    assert all(w["image"].endswith(":0.8.1") for w in outcome.workers.values())


def test_an_install_during_an_upgrade_is_refused_and_changes_nothing(root, write_env):
    host = Host(root, crashing=("tracardi/com-tracardi-trigger-worker:0.8.2",))
    env_before = (root / "etc/tracardi/.env-docker").read_bytes()
    rotated = write_env(CLEAN_ENV + "REDIS_PASSWORD=rotated-password\n", name="rotated")
    tried = []

    def install_meanwhile(unit: str) -> None:
        if unit == WORKERS[1]:
            tried.append(CliRunner().invoke(main, ["install", "--root", str(root),
                                                   "--env-file", str(rotated)]))

    host.after_restart = install_meanwhile
    outcome = upgrade(root, host).run("0.8.2", FAST)

    assert tried[0].exit_code == 1
    assert ("the upgrade from image tag 0.8.1 to 0.8.2 is running on "
            f"{root} (pid {os.getpid()})") in tried[0].output
    assert outcome.result == "rolled back"
    assert (root / "etc/tracardi/.env-docker").read_bytes() == env_before


def test_an_upgrade_while_an_install_runs_is_refused(root):
    host = Host(root)
    with host_lock(root), pytest.raises(InstallError, match="another tracardi-systemd "
                                        "install, uninstall or upgrade is running"):
        upgrade(root, host).run("0.8.2", FAST)
    assert host.restarted() == [] and tags(root) == {"0.8.1"}


def test_the_upgrade_is_recorded_before_the_first_unit_file_changes(root, monkeypatch):
    seen = []
    apply_files = transaction.apply_files

    def apply_and_look(plan, *args):
        if any(c.new is not None and "0.8.2" in c.new for c in plan.file_changes):
            seen.append(load_manifest(root).in_flight)
        return apply_files(plan, *args)

    monkeypatch.setattr(transaction, "apply_files", apply_and_look)
    host = Host(root)
    before = host.runs()
    upgrade(root, host).run("0.8.2", FAST)

    record = seen[0]
    assert (record.from_tag, record.to_tag, record.pid) == ("0.8.1", "0.8.2", os.getpid())
    assert record.images[before[WORKERS[0]][0]] == before[WORKERS[0]][1]
    assert load_manifest(root).in_flight is None


@pytest.fixture
def disposition():
    """Set a signal's disposition for one test (pytest may run under nohup, with SIGHUP
    ignored), and put back what it was."""
    kept: dict[int, object] = {}

    def set_to(signum: int, handler) -> None:
        kept.setdefault(signum, signal.signal(signum, handler))

    yield set_to
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_the_upgrade_rolls_back_what_moved(root, signum, disposition):
    if signal.getsignal(signum) == signal.SIG_IGN:
        disposition(signum, signal.SIG_DFL)  # as in a terminal; nohup is the next test's
    handler = signal.getsignal(signum)
    host, journal = Host(root), Journal()
    before = host.runs()

    def signal_at_the_third(unit: str) -> None:
        if unit == WORKERS[2]:
            os.kill(os.getpid(), signum)

    host.after_restart = signal_at_the_third
    outcome = upgrade(root, host, journal).run("0.8.2", FAST)

    name = signal.Signals(signum).name
    assert (outcome.result, outcome.exit_status) == ("rolled back", 3)
    assert outcome.reason == f"interrupted by {name}"
    assert host.runs() == before and tags(root) == {"0.8.1"}
    assert host.restarted()[-1] == tuple(WORKERS[:3])
    assert load_manifest(root).in_flight is None
    assert journal.ids()[-1] == UpgradeEvent.ROLLED_BACK.value
    assert signal.getsignal(signum) == handler  # put back as it was


def test_an_upgrade_started_under_nohup_goes_on_through_a_hangup(root, disposition):
    disposition(signal.SIGHUP, signal.SIG_IGN)
    host = Host(root)
    host.after_restart = lambda unit: (os.kill(os.getpid(), signal.SIGHUP)
                                       if unit == WORKERS[2] else None)
    outcome = upgrade(root, host, Journal()).run("0.8.2", FAST)
    assert outcome.result == "done" and tags(root) == {"0.8.2"}
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


class Killed(BaseException):
    """What a SIGKILL does to the upgrade: nothing of it runs any more."""


def killed_upgrade(root: Path, host: Host) -> None:
    """An upgrade to 0.8.2 killed after its third worker restarted; its pid then gone."""

    def kill(unit: str) -> None:
        if unit == WORKERS[2]:
            raise Killed

    host.after_restart = kill
    with pytest.raises(Killed):
        upgrade(root, host).run("0.8.2", FAST)
    host.after_restart = lambda unit: None
    gone = subprocess.Popen(["true"])
    gone.wait()
    manifest = load_manifest(root)
    manifest.upgrade = manifest.upgrade | {"pid": gone.pid}
    save_manifest(root, manifest)


def test_after_a_kill_status_says_so_and_upgrade_rolls_back_then_upgrades(root):
    host, journal = Host(root), Journal()
    before = host.runs()
    killed_upgrade(root, host)
    assert {host.runs()[u][0].rsplit(":", 1)[1] for u in WORKERS} == {"0.8.1", "0.8.2"}

    report = collect(load_manifest(root), host, host)
    assert "the upgrade from image tag 0.8.1 to 0.8.2 was interrupted" in report.upgrade
    assert not report.healthy

    outcome = upgrade(root, host, journal).run("0.8.2", FAST)

    assert outcome.result == "done"
    assert journal.ids() == [UpgradeEvent.RECOVERED.value, UpgradeEvent.STARTED.value,
                             UpgradeEvent.DONE.value]
    assert {host.runs()[u][0] for u in WORKERS} == {
        image.replace("0.8.1", "0.8.2") for image, _ in before.values()}
    assert load_manifest(root).in_flight is None


def test_after_a_kill_rollback_puts_every_worker_on_the_old_image(root):
    host = Host(root)
    before = host.runs()
    killed_upgrade(root, host)
    back = upgrade(root, host)

    outcome = back.run(rollback_tag(back.manifest), FAST)

    assert (outcome.result, outcome.from_tag) == ("done", "0.8.1")
    assert host.runs() == before and tags(root) == {"0.8.1"}
    assert load_manifest(root).in_flight is None


def test_after_a_kill_install_puts_every_worker_on_the_old_tag(root, write_env):
    host = Host(root)
    before = host.runs()
    killed_upgrade(root, host)
    installer = Installer(root, host, host)
    installer.live = True  # the fake host is live; only files go under root
    params = {"tracardi_version": "0.8.1"}
    reuse = reuse_previous(params, set(), load_manifest(root))
    assert params["image_tag"] == "0.8.1"
    assert any("which was interrupted: --image-tag=0.8.1" in note for note in reuse.notes)
    prepared = prepare(root / "etc/tracardi/.env-docker", **params)
    request = InstallRequest.of(prepared, root, Path("/etc/systemd/system"),
                                root / "etc/tracardi/.env-docker",
                                Path("/etc/tracardi/.env-docker"))

    result = installer.install(request, images=[], options=recorded(params),
                               tracardi_version="0.8.1", enable=True, start=False,
                               dry_run=False)

    assert any("was interrupted" in line for line in result.lines)
    assert ("try-restart", *WORKERS) in host.calls
    assert host.runs() == before and tags(root) == {"0.8.1"}
    assert load_manifest(root).in_flight is None


def test_the_new_init_runs_first_and_a_failing_one_moves_no_worker(root12):
    host = Host(root12, units=V12_WORKERS, crashing=("tracardi/init:1.2.4",))
    before = host.runs()

    outcome = upgrade(root12, host).run("1.2.4", FAST)

    assert (outcome.result, outcome.failed_unit) == ("rolled back", INIT_UNIT)
    assert "it failed on 1.2.4 (exit-code)" in outcome.reason
    assert [c for c in host.restarted() if INIT_UNIT not in c] == []  # no worker touched
    assert host.runs() == before
    assert host.init == {"active": "active", "since": 101, "image": "tracardi/init:1.2.x"}
    assert tags_of(root12, [INIT_UNIT, *V12_WORKERS]) == {"1.2.x"}


def test_the_new_init_succeeds_before_the_first_worker_restarts(root12):
    host = Host(root12, units=V12_WORKERS)
    order = []
    host.after_restart = lambda unit: order.append((unit, host.init["image"]))

    assert upgrade(root12, host).run("1.2.4", FAST).result == "done"

    assert order[0] == (V12_WORKERS[0], "tracardi/init:1.2.4")
    assert [c for c in host.calls if INIT_UNIT in c][-1] == (
        "restart", "--no-block", "--job-mode=ignore-dependencies", INIT_UNIT)


def test_pull_progress_is_one_line_per_layer_done_on_stderr_never_in_the_lines(root):
    said = []
    clock = FakeClock()
    run = Upgrade(Installer(root, Host(root), Host(root)), Journal(), said.append, Host(root),
                  probe=lambda target: True, clock=clock, sleep=clock.advance)
    run.installer.docker = run.engine = host = Host(root)
    run.installer.systemctl = host

    outcome = run.run("0.8.2", FAST)

    assert "  tracardi/update-worker:0.8.2: abc123: Pull complete" in said
    assert not [line for line in said if "Downloading" in line]
    assert not [line for line in outcome.lines if "Pull complete" in line]


def test_stream_hands_on_every_line_and_ends_what_outlasts_its_timeout():
    lines = []
    with pytest.raises(CommandError, match=r"failed \(exit status 3\): one; two"):
        stream(["/bin/sh", "-c", "echo one; echo two >&2; exit 3"], lines.append)
    assert lines == ["one", "two"]
    started = time.monotonic()
    with pytest.raises(CommandError, match="did not finish in 1 s"):
        stream(["/bin/sh", "-c", "echo start; exec sleep 30"], lines.append, timeout=1)
    assert time.monotonic() - started < 10


def test_json_is_one_document_on_stdout_even_when_refused():
    result = CliRunner().invoke(main, ["upgrade", "--image-tag", "0.8.2", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["result"] == "refused"


def tags_of(root: Path, units: list[str]) -> set[str]:
    return {Host(root, units=[]).image_of(u).rsplit(":", 1)[1] for u in units}


def test_the_agent_leaves_the_workers_to_a_running_upgrade_and_reports_a_killed_one(
        tmp_path, monkeypatch):
    from test_agent_loop import FIVE, SCHEDULER, Rig

    from tracardi_systemd.agent import loop as agent_module
    from tracardi_systemd.install.inflight import UpgradeInFlight

    monkeypatch.setattr(agent_module, "memory_by_pid", lambda pids, *_: {})
    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit", restarts=5)
    containers = [inspected(u, pid=10) for u in FIVE if u != SCHEDULER]
    rig = Rig(tmp_path, FIVE, unit_state=states, containers=containers)
    record = UpgradeInFlight.here("0.8.1", "0.8.2", {})
    rig.manifest_file.write_text(replace(rig.manifest, upgrade=record.to_dict()).to_json())

    for _ in range(4):  # well past the first backoff
        rig.clock.advance(15)
        observation, _ = rig.agent.cycle()
    assert rig.systemctl.calls == []
    assert "the upgrade from image tag 0.8.1 to 0.8.2 running: its gate has the workers, " \
           "the agent leaves them alone" in rig.agent.status_line(observation)
    assert rig.stderr.getvalue().count("is running (pid") == 1

    gone = subprocess.Popen(["true"])
    gone.wait()
    killed = replace(record, pid=gone.pid)
    rig.manifest_file.write_text(replace(rig.manifest, upgrade=killed.to_dict()).to_json())
    for _ in range(3):
        rig.clock.advance(15)
        rig.agent.cycle()
    assert ("reset-failed", SCHEDULER) in rig.systemctl.calls
    assert rig.stderr.getvalue().count("was interrupted (pid") == 1
    assert "run  tracardi-systemd upgrade --rollback  to put every worker back on 0.8.1" in \
        rig.stderr.getvalue()


def test_a_signal_before_the_upgrade_began_changes_nothing_and_exits_3(root, monkeypatch,
                                                                      disposition):
    from tracardi_systemd.upgrade import run as run_module

    disposition(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, also under nohup

    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    prepare_for_real = run_module.prepare

    def prepare_then_hup(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGHUP)
        return prepare_for_real(*args, **kwargs)

    monkeypatch.setattr(run_module, "prepare", prepare_then_hup)
    host = Host(root)

    outcome = upgrade(root, host).run("0.8.2", FAST)

    assert (outcome.result, outcome.exit_status, outcome.changed) == ("rolled back", 3, False)
    assert outcome.lines == ["interrupted by SIGHUP before anything was changed"]
    assert host.calls == []
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize("printed", ["sha256:4f1e", "4f1e"])
def test_an_image_id_is_compared_as_the_engine_lists_it_whichever_client_printed_it(printed):
    """`podman image inspect` prints the id without docker's sha256: prefix, which the
    Engine API's list (and so a rollback's gate) carries on both runtimes."""
    from tracardi_systemd.upgrade.run import _inspect

    def client(*args: str) -> str:
        return f"{printed} docker.io/tracardi/update-worker@sha256:aa \n"

    assert _inspect(client, "docker.io/tracardi/update-worker:0.8.1") == (
        "sha256:4f1e", "docker.io/tracardi/update-worker@sha256:aa")
