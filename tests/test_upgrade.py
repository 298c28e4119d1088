"""`upgrade` against an offline root and a scripted host: each worker runs the image its
installed unit file names, and an image of a tag in `crashing` crash-loops."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeClock, inspected, listed, unit_props
from samples import CLEAN_ENV

from tracardi_systemd.cli.main import main
from tracardi_systemd.host.commands import CommandError
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.install.manifest import load_manifest
from tracardi_systemd.install.transaction import Installer
from tracardi_systemd.upgrade.run import (
    Upgrade,
    UpgradeError,
    UpgradeEvent,
    UpgradeSettings,
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
                 unpullable: tuple[str, ...] = ()):
        self.root = root
        self.crashing = crashing  # images that exit at once
        self.on_host = set(on_host)
        self.unpullable = unpullable
        self.ids: dict[str, str] = {}  # image reference -> the image id it names
        self.state = {u: {"active": "active", "restarts": 0, "image": self.image_of(u), "n": 0,
                          "id": self.id_of(self.image_of(u))}
                      for u in WORKERS}
        self.calls: list[tuple[str, ...]] = []
        self.program = "/usr/bin/docker"

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
        if args[0] == "restart":
            for unit in args[1:]:
                self.start(unit)
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
