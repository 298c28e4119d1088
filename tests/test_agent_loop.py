"""The agent's loop with fake systemctl and docker: a fixed number of host calls per cycle,
the actions carried out, the journal entries, the published state file, dry runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fakes import FakeClock, FakeEngine, FakeSystemctl, inspected, unit_props

from tracardi_systemd.agent import loop as agent_module
from tracardi_systemd.agent.loop import Agent, InputFiles, needs_of, worker_of
from tracardi_systemd.agent.policy import Config, EntryKind, History, State
from tracardi_systemd.cli.table import describe_cycle
from tracardi_systemd.host.commands import CommandError
from tracardi_systemd.host.journal import Journal
from tracardi_systemd.host.runtimes import RUNTIME_HOSTS
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.names import AGENT_UNIT, DOCKER_UNIT, LABEL_MANAGED, TARGET
from tracardi_systemd.observe.model import QueueReading, WorkReading
from tracardi_systemd.observe.work import Consumer
from tracardi_systemd.spec.addresses import Dependency
from tracardi_systemd.spec.catalog import workers_for

FIVE = [f"tracardi-{w.name}.service" for w in workers_for("0.8.1")]
REDIS = "redis 127.0.0.1:6379"  # as the agent names it: where the workers connect
SCHEDULER = "tracardi-scheduler.service"
MIB = 2**20


@pytest.fixture(autouse=True)
def quiet_host(monkeypatch):
    """The real host's memory and disk must not leak into the decisions."""
    monkeypatch.setattr(agent_module.psutil, "virtual_memory",
                        lambda: type("Memory", (), {"percent": 30.0})())
    monkeypatch.setattr(agent_module, "_disk_percent", lambda path: 40.0)
    monkeypatch.setattr(agent_module, "memory_by_pid",
                        lambda pids, *_: {pid: 64 * MIB for pid in pids if pid > 0})


class Rig:
    def __init__(self, tmp_path: Path, units: list[str], config: Config | None = None,
                 unit_state: dict[str, dict[str, str]] | None = None,
                 containers: list[dict] | None = None, runtime: str = "docker"):
        self.manifest = Manifest(
            unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
            tracardi_version="0.8.1", units=[TARGET, AGENT_UNIT, *units],
        )
        self.manifest_file = tmp_path / "manifest.json"
        self.manifest_file.write_text(self.manifest.to_json())
        self.env_file = tmp_path / "env"
        self.env_file.write_text("REDIS_HOST=127.0.0.1\nELASTIC_HOST=http://10.0.0.5:9200\n")
        states = unit_state if unit_state is not None else {u: unit_props() for u in units}
        self.systemctl = FakeSystemctl({DOCKER_UNIT: unit_props(), TARGET: unit_props(),
                                        **states})
        self.engine = FakeEngine(
            containers if containers is not None else [inspected(u, pid=10) for u in units])
        self.probed: list[set[str]] = []
        self.dependencies = {REDIS: True, "elasticsearch": True}
        self.stderr = io.StringIO()
        self.journal = Journal(socket_path=str(tmp_path / "no-journal-socket"),
                               fallback=self.stderr)
        self.clock = FakeClock()
        self.state_file = tmp_path / "run" / "agent-state.json"
        self.agent = Agent(InputFiles(self.manifest_file, self.env_file), self.systemctl,
                           self.engine, self.probe, self.journal, config or Config(),
                           runtime=RUNTIME_HOSTS[runtime], state_file=self.state_file,
                           clock=self.clock, read_work=self.read_work)
        self.work: dict[str, WorkReading] = {}
        self.consumers: list[list[Consumer]] = []

    def read_work(self, consumers: list[Consumer], password: str) -> dict[str, WorkReading]:
        self.consumers.append(consumers)
        return {c.unit: self.work[c.unit] for c in consumers if c.unit in self.work}

    def probe(self, wanted: list[Dependency]) -> dict[str, bool]:
        names = {d.name for d in wanted}
        self.probed.append(names)
        return {name: up for name, up in self.dependencies.items() if name in names}

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())


def test_a_reconcile_asks_the_properties_only_of_units_whose_state_changed(tmp_path):
    rig = Rig(tmp_path, FIVE)
    rig.agent.cycle()
    rig.systemctl.units[SCHEDULER] = unit_props("activating", "auto-restart", "exit-code")
    rig.clock.advance(5)
    observation, _ = rig.agent.cycle()
    # docker's with it: its timestamps judge a worker that is not active
    assert rig.systemctl.shows[-1][0] == [SCHEDULER, DOCKER_UNIT]
    assert observation.workers[SCHEDULER].unit.result == "exit-code"
    rig.systemctl.units[SCHEDULER] = unit_props()
    rig.clock.advance(5)
    rig.agent.cycle()  # back to active: its properties are asked once more, then kept
    rig.clock.advance(5)
    rig.agent.cycle()
    assert [units for units, _ in rig.systemctl.shows[1:]] == [[SCHEDULER, DOCKER_UNIT]] * 2


@pytest.mark.parametrize("count", [5, 200])
def test_healthy_cycle_makes_a_fixed_number_of_calls_and_acts_on_nothing(tmp_path, count):
    units = FIVE if count == 5 else [f"tracardi-scheduler@{i}.service" for i in range(count)]
    rig = Rig(tmp_path, units)
    observation, decision = rig.agent.cycle()

    assert len(rig.systemctl.shows) == 1
    shown_units, properties = rig.systemctl.shows[0]
    # every worker unit, docker's and the target's: not the agent's own
    assert shown_units == [*units, DOCKER_UNIT, TARGET]
    assert "ActiveState" in properties
    assert rig.engine.listings == [f"{LABEL_MANAGED}=true"]
    assert rig.probed == [{REDIS, "elasticsearch"}]
    assert rig.systemctl.calls == []
    assert rig.engine.removed == []
    assert sorted(rig.engine.inspected) == sorted(c["Id"] for c in rig.engine.entries)
    assert decision.actions == []
    assert decision.entries == []
    assert rig.stderr.getvalue() == ""
    assert len(observation.workers) == count
    assert all(v.memory == 64 * MIB for v in observation.workers.values())

    rig.clock.advance(5)
    rig.agent.cycle()
    # nothing changed: systemd is asked for the states only, not every unit's properties
    assert len(rig.systemctl.state_lists) == 1 and len(rig.systemctl.shows) == 1
    assert len(rig.engine.listings) == 2
    assert len(rig.engine.inspected) == count  # a container is inspected once, not per cycle
    assert rig.systemctl.calls == []
    rig.agent.cycle(refresh_systemd=False)  # a tick: no client process at all
    assert len(rig.systemctl.state_lists) == 1 and len(rig.systemctl.shows) == 1
    state = rig.state()
    assert state["summary"].startswith(f"{count}/{count} workers running")
    assert {u: w["state"] for u, w in state["workers"].items()} == dict.fromkeys(units, "running")


def test_failed_unit_is_reset_and_started_after_the_backoff(tmp_path):
    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit", restarts=5)
    containers = [inspected(u, pid=10) for u in FIVE if u != SCHEDULER]
    rig = Rig(tmp_path, FIVE, unit_state=states, containers=containers)

    _, decision = rig.agent.cycle()
    assert [e.kind for e in decision.entries] == [EntryKind.GAVE_UP]
    assert rig.systemctl.calls == []
    assert rig.stderr.getvalue().startswith(f"<3>systemd gave up on {SCHEDULER}")
    state = rig.state()["workers"][SCHEDULER]
    assert state == {"state": "backoff", "restarts": 0, "last_reason": "start-limit-hit",
                     "dependencies": {REDIS: True, "elasticsearch": True}, "work": ""}

    rig.clock.advance(9.9)  # the first backoff is at least 10 s
    rig.agent.cycle()
    assert rig.systemctl.calls == []

    rig.clock.advance(2.2)  # and at most 12 s with 20 % jitter
    _, decision = rig.agent.cycle()
    assert rig.systemctl.calls == [("reset-failed", SCHEDULER),
                                   ("start", "--no-block", SCHEDULER)]
    assert [e.kind for e in decision.entries] == [EntryKind.REARM]
    assert f"<4>re-arming {SCHEDULER}" in rig.stderr.getvalue()
    assert rig.state()["workers"][SCHEDULER] == {
        "state": "restarting", "restarts": 1, "last_reason": "start-limit-hit",
        "dependencies": {REDIS: True, "elasticsearch": True}, "work": ""}

    # systemd has it running again
    rig.systemctl.units[SCHEDULER] = unit_props()
    rig.engine.entries.append(inspected(SCHEDULER, pid=10))
    rig.clock.advance(5)
    rig.agent.cycle()
    assert len(rig.systemctl.calls) == 2
    assert rig.state()["workers"][SCHEDULER]["state"] == "running"
    assert rig.state()["summary"] == f"5/5 workers running; elasticsearch ok; {REDIS} ok"


def test_state_file_is_json_with_each_units_view(tmp_path):
    rig = Rig(tmp_path, FIVE)
    rig.agent.cycle()
    state = rig.state()
    assert set(state) == {"summary", "workers"}
    assert sorted(state["workers"]) == sorted(FIVE)
    for unit, entry in state["workers"].items():
        deps = {REDIS: True} | ({} if unit == "tracardi-update.service" else
                                {"elasticsearch": True})
        # The update worker gave no reading (none scripted): no verdict.
        work = "" if unit == "tracardi-update.service" else "unknown"
        assert entry == {"state": "running", "restarts": 0, "last_reason": "",
                         "dependencies": deps, "work": work}


def test_dry_run_observes_only_and_keeps_no_history(tmp_path):
    states = {SCHEDULER: unit_props("failed", "failed", "start-limit-hit")}
    rig = Rig(tmp_path, [SCHEDULER], unit_state=states, containers=[])

    _, decision = rig.agent.cycle(dry_run=True)
    assert [e.kind for e in decision.entries] == [EntryKind.GAVE_UP]  # it decided...
    assert rig.agent.history == History()  # ...but remembers nothing
    assert not rig.state_file.exists()
    assert rig.stderr.getvalue() == ""
    assert rig.systemctl.calls == []

    rig.agent.cycle()  # a real cycle: backoff starts
    published = rig.state_file.read_bytes()
    remembered = rig.agent.history
    rig.clock.advance(60)
    observation, decision = rig.agent.cycle(dry_run=True)
    assert [(a.kind.value, a.target) for a in decision.actions] == [("rearm", SCHEDULER)]
    assert rig.systemctl.calls == []
    assert rig.agent.history is remembered
    assert rig.agent.history.workers[SCHEDULER].state is State.BACKOFF
    assert rig.state_file.read_bytes() == published
    text = describe_cycle(observation, decision, dry_run=True)
    assert f"would rearm {SCHEDULER}: start-limit-hit" in text
    assert "failed/failed" in text

    rig.agent.cycle()
    assert rig.systemctl.calls == [("reset-failed", SCHEDULER),
                                   ("start", "--no-block", SCHEDULER)]


def test_orphan_container_is_removed_on_the_second_cycle(tmp_path):
    states = {SCHEDULER: unit_props("inactive", "dead")}
    orphan = inspected(SCHEDULER, cid="orphan-id", pid=10)
    rig = Rig(tmp_path, [SCHEDULER], unit_state=states, containers=[orphan])
    rig.agent.cycle()
    assert rig.engine.removed == []
    rig.clock.advance(5)
    rig.agent.cycle()
    assert rig.engine.removed == ["orphan-id"]
    assert "<4>removing container tracardi-scheduler" in rig.stderr.getvalue()


def test_worker_over_its_memory_limit_is_restarted(tmp_path):
    config = Config(memory_limits={"scheduler": 32 * MIB}, memory_cycles=2)
    rig = Rig(tmp_path, FIVE, config=config)  # every container reads 64 MiB
    rig.agent.cycle()
    assert rig.systemctl.calls == []
    rig.clock.advance(5)
    _, decision = rig.agent.cycle()
    assert rig.systemctl.calls == [("restart", "--no-block", SCHEDULER)]
    event = decision.entries[0]
    assert event.fields["TRACARDI_MEMORY_BYTES"] == str(64 * MIB)
    assert rig.state()["workers"][SCHEDULER]["last_reason"] == "memory limit"


def test_failed_host_command_is_reported_and_the_cycle_completes(tmp_path):
    class FailingSystemctl(FakeSystemctl):
        def __call__(self, *args: str) -> str:
            super().__call__(*args)
            raise CommandError(f"systemctl {args[0]} failed (exit status 1)")

    states = {SCHEDULER: unit_props("failed", "failed", "start-limit-hit")}
    rig = Rig(tmp_path, [SCHEDULER], unit_state=states, containers=[])
    rig.agent.systemctl = FailingSystemctl(rig.systemctl.units)
    rig.agent.cycle()
    rig.clock.advance(60)
    rig.agent.cycle()
    assert rig.agent.systemctl.calls == [("reset-failed", SCHEDULER)]
    assert "<3>rearm tracardi-scheduler.service failed: systemctl reset-failed failed" in (
        rig.stderr.getvalue())
    assert rig.state()["workers"][SCHEDULER]["state"] == "restarting"


def test_dependency_down_holds_and_is_reported_once(tmp_path):
    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit")
    containers = [inspected(u, pid=10) for u in FIVE if u != SCHEDULER]
    rig = Rig(tmp_path, FIVE, unit_state=states, containers=containers)
    rig.dependencies[REDIS] = False
    for _ in range(10):
        rig.agent.cycle()
        rig.clock.advance(30)
    assert rig.systemctl.calls == []
    assert rig.stderr.getvalue().count(f"<3>{REDIS} is unreachable") == 1
    assert rig.stderr.getvalue().count(f"<4>{SCHEDULER} failed while {REDIS} is unreachable") == 1
    assert rig.state()["workers"][SCHEDULER]["state"] == "held"
    assert f"{REDIS} unreachable" in rig.state()["summary"]

    rig.dependencies[REDIS] = True
    rig.agent.cycle()
    # The held unit at once; of the four that ran through the outage (0.8.1 workers do not
    # recover from one by themselves), one restart per cycle.
    running = sorted(u for u in FIVE if u != SCHEDULER)
    assert rig.systemctl.calls == [("reset-failed", SCHEDULER),
                                   ("start", "--no-block", SCHEDULER),
                                   ("restart", "--no-block", running[0])]
    for _ in range(5):
        rig.clock.advance(30)
        rig.agent.cycle()
    restarted = [call[2] for call in rig.systemctl.calls if call[0] == "restart"]
    assert restarted == running
    assert rig.stderr.getvalue().count(f"{REDIS} is reachable again") == 1


def test_a_stop_queued_for_docker_means_docker_is_going_down_and_the_engine_is_not_asked(
        tmp_path):
    """`systemctl stop docker` first stops the workers that require it: docker.service stays
    `active` for seconds, and a connection in that time would start it again through
    docker.socket once it is down."""
    rig = Rig(tmp_path, FIVE)
    rig.agent.cycle()
    assert len(rig.engine.listings) == 1
    rig.systemctl.queued[DOCKER_UNIT] = "stop"
    rig.agent.systemd_view_stale = True  # as after a container's death
    rig.clock.advance(2)
    observation, _ = rig.agent.cycle(refresh_systemd=False)
    assert not observation.docker_active and rig.engine.listings == [f"{LABEL_MANAGED}=true"]
    assert "<3>docker.service is not running" in rig.stderr.getvalue()
    rig.clock.advance(2)
    rig.agent.cycle(refresh_systemd=False)  # a tick asks systemd again while docker is not up
    assert len(rig.engine.listings) == 1 and len(rig.systemctl.state_lists) == 2

    rig.systemctl.queued[DOCKER_UNIT] = "reload"  # dockerd stays: not going down
    rig.clock.advance(2)
    observation, _ = rig.agent.cycle(refresh_systemd=False)
    assert observation.docker_active and len(rig.engine.listings) == 2


def test_a_worker_docker_stopped_is_started_even_when_docker_came_back_between_two_looks(
        tmp_path):
    """Seen in a Debian 12 VM: `systemctl stop docker` stopped the update worker, docker.socket
    started docker again within a second, and the agent's next look found docker `active`
    as in the look before. Only docker's timestamps tell that it went down in between; a
    view of it kept from that earlier look hid them, and the worker stayed down."""
    update = "tracardi-update.service"
    rig = Rig(tmp_path, FIVE)
    rig.agent.cycle()
    rig.systemctl.units[update] = unit_props("deactivating", "stop")
    rig.engine.entries = [c for c in rig.engine.entries if c["Config"]["Labels"][
        "tracardi.unit"] != update]
    rig.agent.systemd_view_stale = True  # as after its container's death
    rig.clock.advance(2)
    rig.agent.cycle(refresh_systemd=False)  # docker still active, no job queued (any more)
    rig.systemctl.units[update] = dict(unit_props("inactive", "dead"),
                                       InactiveEnterTimestampMonotonic="44650000")
    rig.systemctl.units[DOCKER_UNIT] = dict(unit_props(),
                                            ActiveExitTimestampMonotonic="44690000")
    rig.clock.advance(2)
    rig.agent.cycle()  # a worker in flux: systemd is asked every tick
    assert ("start", "--no-block", update) in rig.systemctl.calls
    assert rig.agent.history.workers[update].state is State.RESTARTING


def test_on_podman_docker_service_is_never_asked_and_the_engine_always_is(tmp_path, monkeypatch):
    """Podman has no daemon whose stop takes the workers down: docker.service, stopped or
    not, says nothing about them, and podman.socket answers whenever it is asked."""
    disks: list[str] = []
    monkeypatch.setattr(agent_module, "_disk_percent", lambda path: disks.append(path) or 40.0)
    rig = Rig(tmp_path, FIVE, runtime="podman")
    rig.systemctl.units[DOCKER_UNIT] = unit_props("deactivating", "stop")
    rig.systemctl.queued[DOCKER_UNIT] = "stop"
    observation, decision = rig.agent.cycle()
    assert rig.systemctl.shows[0][0] == [*FIVE, TARGET]
    assert observation.docker is None and observation.docker_active
    assert decision.actions == [] and decision.entries == []
    assert disks == ["/var/lib/containers/storage"]

    update = "tracardi-update.service"
    rig.systemctl.units[update] = unit_props("active", "running")
    rig.engine.entries = [c for c in rig.engine.entries
                          if c["Config"]["Labels"]["tracardi.unit"] != update]
    for _ in range(3):  # the grace of a missing container, asking the engine each tick
        rig.clock.advance(10)
        rig.agent.cycle(refresh_systemd=False)
    rig.clock.advance(10)
    rig.agent.cycle(refresh_systemd=False)
    assert len(rig.engine.listings) == 5
    assert ("restart", "--no-block", update) in rig.systemctl.calls
    assert DOCKER_UNIT not in {unit for units, _ in rig.systemctl.shows for unit in units}


def test_describe_cycle_of_a_healthy_host(tmp_path):
    rig = Rig(tmp_path, FIVE)
    observation, decision = rig.agent.cycle()
    text = describe_cycle(observation, decision, dry_run=False)
    lines = text.splitlines()
    assert lines[0].split() == ["UNIT", "SYSTEMD", "CONTAINER", "MEMORY", "AGENT", "STATE"]
    assert any(SCHEDULER in line and "active/running" in line and "64MiB" in line
               and "running" in line for line in lines)
    assert lines[-2] == f"5/5 workers running; elasticsearch ok; {REDIS} ok"
    assert lines[-1] == "nothing to do"


@pytest.mark.parametrize(("unit", "worker"), [
    ("tracardi-scheduler@2.service", "scheduler"),
    ("tracardi-scheduler.service", "scheduler"),
    ("tracardi-post-collection.service", "post-collection"),
    ("tracardi-post-collection@10.service", "post-collection"),
    ("tracardi-update.service", "update"),
    ("tracardi-agent.service", None),
    ("tracardi-nonsense.service", None),
])
def test_worker_of(unit, worker):
    catalog = {w.name: w for w in workers_for("0.8.1")}
    found = worker_of(unit, catalog)
    assert (found.name if found else None) == worker


def test_needs_of():
    catalog = {w.name: w for w in workers_for("0.8.1")}
    settings = {"REDIS_HOST": "redis://10.0.0.7:6380", "REDIS_PORT": "6381",
                "ELASTIC_HOST": "es-a,es-b:9201", "ELASTIC_SCHEME": "https",
                "ELASTIC_PORT": "9400"}
    # 0.8.1: the update worker takes the port from REDIS_HOST, core workers from REDIS_PORT
    assert needs_of(catalog["update"], settings, "host") == [
        Dependency("redis 10.0.0.7:6380", (("10.0.0.7", 6380),))]
    assert needs_of(catalog["scheduler"], settings, "host") == [
        Dependency("redis 10.0.0.7:6381", (("10.0.0.7", 6381),)),
        Dependency("elasticsearch", (("es-a", 9400), ("es-b", 9201)))]
    assert needs_of(None, settings, "host") == []


@pytest.mark.parametrize(("network", "own_loopback"), [(None, True), ("tracardi", True),
                                                       ("host", False)])
def test_the_agent_probes_as_the_containers_network_sees(tmp_path, network, own_loopback):
    """The installed network decides whether the env file's 127.0.0.1 is the host's Redis
    or the worker's own container."""
    rig = Rig(tmp_path, [SCHEDULER])
    rig.manifest.options = {"network": network} if network else {}
    rig.manifest_file.write_text(rig.manifest.to_json())
    rig.agent.reload_if_changed()
    assert {d.own_loopback for d in rig.agent.needs[SCHEDULER]} == {own_loopback}


def test_a_unit_gone_from_the_manifest_is_forgotten_on_reload(tmp_path):
    """After a reinstall with fewer workers the gone unit (here in backoff) leaves the
    history and the state file, and the agent settles again instead of asking systemd
    every tick."""
    from tracardi_systemd.agent.policy import settled

    states = {u: unit_props() for u in FIVE}
    states[SCHEDULER] = unit_props("failed", "failed", "start-limit-hit", restarts=5)
    rig = Rig(tmp_path, FIVE, unit_state=states,
              containers=[inspected(u, pid=10) for u in FIVE if u != SCHEDULER])
    observation, _ = rig.agent.cycle()
    assert SCHEDULER in rig.state()["workers"]
    assert not settled(observation, rig.agent.history)

    rig.manifest.units = [TARGET, AGENT_UNIT, "tracardi-trigger.service"]
    rig.manifest_file.write_text(rig.manifest.to_json())
    rig.clock.advance(5)
    observation, _ = rig.agent.cycle()
    assert set(rig.agent.history.workers) == {"tracardi-trigger.service"}
    assert set(rig.state()["workers"]) == {"tracardi-trigger.service"}
    assert settled(observation, rig.agent.history)


def test_an_outage_of_a_service_no_unit_needs_any_more_is_forgotten(tmp_path):
    rig = Rig(tmp_path, [SCHEDULER])
    rig.dependencies[REDIS] = False
    rig.agent.cycle()
    assert REDIS in rig.agent.history.down_since
    rig.env_file.write_text("ELASTIC_HOST=http://10.0.0.5:9200\nREDIS_HOST=10.0.0.7\n")
    rig.dependencies = {"redis 10.0.0.7:6379": True, "elasticsearch": True}
    rig.agent.reload_if_changed()
    assert rig.agent.history.down_since == {}


UPDATE = "tracardi-update.service"


def test_work_is_read_for_the_queue_consumers_alone_and_reaches_the_state_file(tmp_path):
    rig = Rig(tmp_path, FIVE)
    rig.env_file.write_text("REDIS_HOST=127.0.0.1\nREDIS_PASSWORD=pw-x\n"
                            "ELASTIC_HOST=http://10.0.0.5:9200\n")
    rig.agent = Agent(InputFiles(rig.manifest_file, rig.env_file), rig.systemctl, rig.engine,
                      rig.probe, rig.journal, Config(), state_file=rig.state_file,
                      clock=rig.clock, read_work=rig.read_work)
    passwords = []
    original = rig.read_work

    def read_work(consumers, password):
        passwords.append(password)
        return original(consumers, password)

    rig.agent.read_work = read_work
    rig.engine.entries[0]["HostConfig"] = {"NetworkMode": "host"}  # the update worker's
    rig.work[UPDATE] = WorkReading("127.0.0.1:6379", {"celery": QueueReading(0, "")}, 0, True, 0)
    rig.agent.cycle()

    [consumers] = rig.consumers
    assert [(c.unit, c.address, c.shared, c.work.queues) for c in consumers] == [
        (UPDATE, ("127.0.0.1", 6379), True, ("celery",))]
    assert passwords == ["pw-x"]
    workers = rig.state()["workers"]
    assert workers[UPDATE]["work"] == "live"
    assert workers[SCHEDULER]["work"] == "unknown"
    assert "pw-x" not in rig.state_file.read_text() + rig.stderr.getvalue()


def test_connections_are_wanted_only_once_work_has_waited_half_the_wait(tmp_path):
    rig = Rig(tmp_path, FIVE, config=Config(work_wait=30))
    rig.work[UPDATE] = WorkReading("127.0.0.1:6379", {"celery": QueueReading(1, "m1")},
                                   None, False, 0)
    judged = []
    for tick in range(4):
        if tick:
            rig.clock.advance(10)
        rig.agent.cycle()
        judged.append(rig.consumers[-1][0].judged)
    # Seen waiting at 0 s; wanted from the tick at 20 s, so the tick at 30 s can judge.
    assert judged == [False, False, True, True]
    assert rig.state()["workers"][UPDATE]["work"] == "not live"
