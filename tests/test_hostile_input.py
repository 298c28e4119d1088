"""Hostile input and host faults (issue: touch only its own files, run nothing a user can edit
as root, end every fault healed or reported). Each test failed on the code before the fix."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import FakeEngine, FakeSystemctl, inspected, unit_props
from offline import invoke
from samples import CLEAN_ENV, SECRET_LICENSE

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.agent.loop import Agent, InputFiles
from tracardi_systemd.agent.policy import Config, History, Observation, State, WorkerView, decide
from tracardi_systemd.host.commands import Systemctl
from tracardi_systemd.host.engine import EngineError
from tracardi_systemd.host.journal import Journal
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.names import AGENT_UNIT, DOCKER_UNIT, TARGET
from tracardi_systemd.observe.model import ContainerState, UnitState
from tracardi_systemd.observe.status import collect
from tracardi_systemd.spec.envfile import MAX_FILE_BYTES, load_env_file
from tracardi_systemd.spec.problems import has_errors

SCHEDULER = "tracardi-scheduler.service"
UPDATE_31 = "tracardi-update@31.service"


# --- 1. the agent never removes a container whose unit systemd runs ----------------------


def unit(name: str, active: str = "active", sub: str = "running", **times: int) -> UnitState:
    return UnitState(name=name, active_state=active, sub_state=sub,
                     result="success", restarts=0, active_since_usec=100, **times)


def container(unit_name: str) -> ContainerState:
    name = unit_name.removesuffix(".service").replace("@", "-")
    return ContainerState(id=f"id-{name}", name=name, unit=unit_name, worker="update",
                          status="running", pid=5, started_at="", image="x")


def test_a_container_of_a_unit_the_manifest_does_not_know_but_systemd_runs_is_kept():
    history = History()
    for now in (0.0, 10.0, 20.0):
        observation = Observation(now=now, workers={}, containers=[container(UPDATE_31)],
                                  dependencies={}, other_units={UPDATE_31: "active"})
        decision = decide(observation, history, Config(), lambda: 0.5)
        history = decision.history
        assert decision.actions == []
    gone = Observation(now=30.0, workers={}, containers=[container(UPDATE_31)],
                       dependencies={}, other_units={UPDATE_31: "inactive"})
    history = decide(gone, history, Config(), lambda: 0.5).history
    again = replace(gone, now=40.0)
    assert [a.target for a in decide(again, history, Config(), lambda: 0.5).actions] == [
        f"id-{UPDATE_31.removesuffix('.service').replace('@', '-')}"]


class AgentRig:
    def __init__(self, tmp_path: Path, units: list[str]):
        self.manifest_file = tmp_path / "manifest.json"
        self.env_file = tmp_path / "env"
        self.env_file.write_text("REDIS_HOST=127.0.0.1\n")
        self.write_manifest(units)
        self.systemctl = FakeSystemctl({DOCKER_UNIT: unit_props(), TARGET: unit_props()})
        self.engine = FakeEngine()
        self.stderr = io.StringIO()
        self.state_file = tmp_path / "run" / "agent-state.json"
        self.clock = [1000.0]
        self.agent = Agent(InputFiles(self.manifest_file, self.env_file), self.systemctl,
                           self.engine, lambda wanted: {},
                           Journal(str(tmp_path / "nosocket"), self.stderr), Config(),
                           state_file=self.state_file, clock=lambda: self.clock[0])

    def write_manifest(self, units: list[str]) -> None:
        manifest = Manifest(unit_dir="/etc/systemd/system", env_file=str(self.env_file),
                            tracardi_version="0.8.1", units=[TARGET, AGENT_UNIT, *units])
        self.manifest_file.write_text(manifest.to_json())
        stat = self.manifest_file.stat()  # a new mtime even within the same clock tick
        os.utime(self.manifest_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    def run(self, units: list[str], cycles: int = 3) -> None:
        for name in units:
            self.systemctl.units[name] = unit_props()
        self.engine.entries = [inspected(u, pid=0) for u in units]
        for _ in range(cycles):
            self.agent.cycle()
            self.clock[0] += 10


def test_replicas_grown_by_a_later_install_are_never_removed_as_orphans(tmp_path):
    thirty = [f"tracardi-update@{i}.service" for i in range(1, 31)]
    thirty_two = [f"tracardi-update@{i}.service" for i in range(1, 33)]
    rig = AgentRig(tmp_path, thirty)
    rig.run(thirty)
    # A second install adds @31 and @32 and starts them; the agent knows only 30 units...
    rig.run(thirty_two)
    assert rig.engine.removed == []
    # ...until it reads the new manifest, which it does when the file changes.
    rig.write_manifest(thirty_two)
    rig.run(thirty_two)
    assert rig.engine.removed == []
    assert sorted(rig.agent.units) == sorted(thirty_two)
    assert "read the installed manifest and env file again (32 worker units; added: " \
           "tracardi-update@31.service, tracardi-update@32.service" in rig.stderr.getvalue()


# --- 2. the manifest is data, not authority -----------------------------------------------










# --- 3. root's agent runs only root-owned code ---------------------------------------------






def test_render_does_not_bake_in_where_it_runs(write_env, tmp_path):
    env = write_env(CLEAN_ENV)
    assert invoke("render", "--env-file", str(env), "--out", str(tmp_path / "out")).exit_code == 0
    agent_unit = (tmp_path / "out" / AGENT_UNIT).read_text()
    assert "ExecStart=/usr/bin/tracardi-systemd agent " in agent_unit


# --- 4. settings that steer the root docker client -----------------------------------------


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "DOCKER_HOST",
                                  "DOCKER_CONFIG", "PATH", "HOME", "BASH_ENV", "ENV", "IFS",
                                  "GCONV_PATH", "GLIBC_TUNABLES", "NOTIFY_SOCKET", "PYTHONPATH"])
def test_names_that_steer_how_programs_run_are_refused(write_env, name):
    path = write_env(CLEAN_ENV + f"{name}=/tmp/evil\n")
    env = load_env_file(path)
    assert has_errors(env.problems)
    line = len(CLEAN_ENV.splitlines()) + 1
    assert str(env.problems[0]).startswith(f"{path}:{line}: error: {name} changes how")


def test_what_is_installed_is_the_bytes_that_were_checked(write_env, tmp_path, monkeypatch):
    """The source is read once: a file swapped after the check cannot be installed."""
    import tracardi_systemd.install.plan as install_module

    root = tmp_path / "root"
    env = write_env(CLEAN_ENV)
    real_apply = install_module.apply_files

    def swap_then_apply(plan, unit_dir, quadlet_dir=None):
        env.write_text(CLEAN_ENV + "LD_PRELOAD=/tmp/evil.so\n")
        real_apply(plan, unit_dir, quadlet_dir)

    monkeypatch.setattr("tracardi_systemd.install.transaction.apply_files", swap_then_apply)
    assert invoke("install", "--root", str(root), "--env-file", str(env)).exit_code == 0
    assert (root / "etc/tracardi/.env-docker").read_text() == CLEAN_ENV


# --- 5. docker stopped, then started ----------------------------------------------------------


def docker_unit(active: str, deactivated_usec: int = 0) -> UnitState:
    return replace(unit(DOCKER_UNIT, active, "running" if active == "active" else "dead"),
                   deactivated_usec=deactivated_usec)


def worker_view(name: str, active: str, inactive_since: int = 0) -> WorkerView:
    state = replace(unit(name, active, "running" if active == "active" else "dead"),
                    inactive_since_usec=inactive_since)
    return WorkerView(unit=state, worker="scheduler",
                      container=container(name) if active == "active" else None,
                      memory=None, needs=frozenset(), recovers_after_outage=False)


def step(history: History, now: float, docker: UnitState, *views: WorkerView,
         target_active: bool = True):
    observation = Observation(now=now, workers={v.unit.name: v for v in views},
                              containers=[], dependencies={}, docker=docker,
                              target_active=target_active)
    decision = decide(observation, history, Config(), lambda: 0.5)
    return decision, decision.history


def test_workers_docker_took_down_come_back_with_it_and_an_operators_stop_is_kept():
    trigger = "tracardi-trigger.service"
    history = History()
    _, history = step(history, 0.0, docker_unit("active"), worker_view(SCHEDULER, "active"),
                      worker_view(trigger, "inactive", inactive_since=50))
    for now in (10.0, 20.0, 130.0):  # docker stopped for two minutes
        decision, history = step(history, now, docker_unit("inactive"),
                                 worker_view(SCHEDULER, "inactive"),
                                 worker_view(trigger, "inactive", inactive_since=50))
        assert decision.actions == []
    assert [e.kind for e in decision.entries] == []
    assert history.workers[SCHEDULER].state is State.HELD
    assert history.workers[trigger].state is State.STOPPED
    decision, history = step(history, 140.0, docker_unit("active"),
                             worker_view(SCHEDULER, "inactive"),
                             worker_view(trigger, "inactive", inactive_since=50))
    assert [(a.kind.value, a.target) for a in decision.actions] == [("rearm", SCHEDULER)]
    assert EntryKind.DOCKER_BACK in [e.kind for e in decision.entries]


def test_the_first_cycle_says_docker_is_down_once():
    history, kinds = History(), []
    for now in (0.0, 10.0, 20.0):
        decision, history = step(history, now, docker_unit("inactive"),
                                 worker_view(SCHEDULER, "inactive"))
        kinds += [e.kind for e in decision.entries]
    assert kinds == [EntryKind.DOCKER_DOWN]


def test_a_docker_restart_between_two_cycles_is_told_by_the_timestamps():
    history = History()
    _, history = step(history, 0.0, docker_unit("active"), worker_view(SCHEDULER, "active"))
    # docker left `active` at 9 s; the worker had become inactive just before, at 8.5 s
    stopped = worker_view(SCHEDULER, "inactive", inactive_since=8_500_000)
    decision, _ = step(history, 10.0, docker_unit("active", 9_000_000), stopped)
    assert [(a.kind.value, a.target) for a in decision.actions] == [("rearm", SCHEDULER)]
    # an operator's stop long before docker's restart is left alone
    long_before = worker_view(SCHEDULER, "inactive", inactive_since=1_000_000)
    decision, _ = step(History(), 10.0, docker_unit("active", 900_000_000), long_before)
    assert decision.actions == []
    # and so is everything when the operator stopped tracardi.target
    decision, _ = step(history, 10.0, docker_unit("active", 9_000_000), stopped,
                       target_active=False)
    assert decision.actions == []


def test_the_agent_makes_no_docker_call_while_docker_is_stopped(tmp_path):
    """Debian's docker.socket would start docker again: an operator's stop must hold."""
    rig = AgentRig(tmp_path, [SCHEDULER])
    rig.systemctl.units[DOCKER_UNIT] = unit_props("inactive", "dead")
    rig.systemctl.units[SCHEDULER] = unit_props("inactive", "dead")
    observation, _ = rig.agent.cycle()
    assert rig.engine.listings == []
    assert rig.agent.status_line(observation) == "0/1 workers running; docker down since " + \
        observation.clock_time


# --- 6. the agent outlives its side channels -----------------------------------------------


def test_a_state_file_replaced_while_nothing_changes_is_written_again_or_reported(tmp_path):
    rig = AgentRig(tmp_path, [SCHEDULER])
    rig.agent.cycle()
    rig.state_file.unlink()
    rig.agent.cycle()  # nothing changed, but the file is gone: written again
    assert rig.state_file.is_file()
    rig.state_file.unlink()
    rig.state_file.mkdir()
    observation, _ = rig.agent.cycle()
    assert "state file" in rig.agent.status_line(observation)


def test_an_unwritable_state_file_is_reported_once_and_supervising_goes_on(tmp_path):
    rig = AgentRig(tmp_path, [SCHEDULER])
    rig.state_file.mkdir(parents=True)  # a folder where the state file should be
    for _ in range(3):
        observation, _ = rig.agent.cycle()
    assert rig.stderr.getvalue().count("not written") == 1
    assert "state file" in rig.agent.status_line(observation)


def test_a_closed_stderr_without_journald_does_not_end_the_agent(tmp_path):
    closed = io.StringIO()
    closed.close()
    journal = Journal(str(tmp_path / "nosocket"), closed)
    journal.send("hello", 3, EntryKind.CYCLE_FAILED.value)  # no exception
    assert journal.lost == 1


class QuietWatcher:
    """No Docker event ever arrives: each wait lasts until its deadline."""

    def wait(self, deadline: float, stop: threading.Event, docker_active: bool) -> bool:
        stop.wait(0.01)
        return False


def test_the_loop_survives_a_failing_cycle_and_stops_on_request(tmp_path, monkeypatch):
    """READY only after a full cycle, WATCHDOG after each completed one, STOPPING at the
    end: read from a real NOTIFY_SOCKET, as systemd would."""
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(1)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    rig = AgentRig(tmp_path, [SCHEDULER])
    stop = threading.Event()
    calls = []

    def flaky_cycle(dry_run=False, refresh_systemd=True):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        if len(calls) == 3:
            stop.set()
        return real_cycle()

    real_cycle = rig.agent.cycle
    rig.agent.cycle = flaky_cycle
    rig.agent.run(stop, QuietWatcher(), 0.01, 60.0)
    notes = []
    with contextlib.suppress(TimeoutError):
        while True:
            notes.append(listener.recv(4096).decode())
    assert len(calls) == 3
    assert "cycle failed: [Errno 28] No space left on device" in rig.stderr.getvalue()
    assert len(notes) == 3  # nothing for the failed cycle
    assert notes[0].startswith("READY=1\nWATCHDOG=1\nSTATUS=0/1 workers running")
    assert notes[1].startswith("WATCHDOG=1\nSTATUS=")
    assert notes[2] == "STOPPING=1"


# --- medium ---------------------------------------------------------------------------------






@pytest.mark.parametrize(("value", "expected"), [
    ("a\ufdd0b", "noncharacter"),
    ("x" * 40_000, "longer than 32 KiB"),
])
def test_values_systemd_would_refuse_are_refused_with_the_limit(write_env, value, expected):
    env = load_env_file(write_env(CLEAN_ENV + f"TRACK={value}\n"))
    assert has_errors(env.problems)
    assert expected in str(env.problems[0])


def test_too_many_settings_are_refused(write_env):
    text = CLEAN_ENV + "".join(f"X{i}=1\n" for i in range(300))
    env = load_env_file(write_env(text))
    assert "more than the 200 a unit passes" in str(env.problems[-1])


def test_a_fifo_or_a_device_is_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        env = load_env_file(path)
        assert "not a regular file" in str(env.problems[0])


def test_a_huge_file_is_refused(write_env):
    env = load_env_file(write_env("A=" + "x" * MAX_FILE_BYTES + "\n"))
    assert "larger than 256 KiB" in str(env.problems[0])


def test_render_into_an_unwritable_place_is_a_message(write_env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "units"
    result = invoke("render", "--env-file", str(write_env(CLEAN_ENV)), "--out", str(out))
    assert result.exit_code == 1
    assert f"\nerror: cannot write into {out}: Not a directory\n" in result.stderr


@pytest.mark.parametrize("kind", ["folder", "binary"])
def test_a_folder_or_binary_where_a_unit_should_be_is_refused(tmp_path, write_env, kind):
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    if kind == "folder":
        (unit_dir / SCHEDULER).mkdir()
    else:
        (unit_dir / SCHEDULER).write_bytes(b"\xff\xfe")
    result = invoke("install", "--root", str(root), "--env-file", str(write_env(CLEAN_ENV)))
    assert result.exit_code == 1
    assert f"{SCHEDULER} was not written by tracardi-systemd" in result.stderr


def test_a_relative_installed_env_file_is_refused(write_env, tmp_path):
    result = invoke("install", "--root", str(tmp_path), "--env-file", str(write_env(CLEAN_ENV)),
                    "--installed-env-file", "etc/.env")
    assert result.exit_code == 2
    assert "must be an absolute path" in result.output




def test_install_root_with_start_or_pull_is_refused_before_anything_is_written(tmp_path,
                                                                                write_env):
    root = tmp_path / "root"
    for flag in ("--start", "--pull"):
        result = invoke("install", "--root", str(root), "--env-file",
                        str(write_env(CLEAN_ENV)), flag)
        assert result.exit_code == 2  # a usage error
        assert "cannot be used with --root" in result.stderr
        assert not root.exists()


def test_status_without_access_to_docker_still_shows_systemds_view(tmp_path):
    class NoDocker(FakeEngine):
        def containers(self, label, all=True):
            raise EngineError("GET /containers/json", "permission denied on "
                              "/var/run/docker.sock: run as root, or as a member of the group "
                              "owning the socket (usually docker)")

    manifest = Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                        tracardi_version="0.8.1", units=[TARGET, AGENT_UNIT, SCHEDULER])
    systemctl = FakeSystemctl({SCHEDULER: unit_props(), AGENT_UNIT: unit_props()})
    status = collect(manifest, systemctl, NoDocker(), tmp_path / "state")
    assert [w.unit_state for w in status.workers] == ["active/running"]
    assert "permission denied" in status.docker_problem
    assert not status.healthy


def test_systemctl_is_run_by_its_path():
    assert Systemctl().argv[0] == "/usr/bin/systemctl"


def test_no_secret_in_any_refusal(write_env, tmp_path):
    env = write_env(CLEAN_ENV + "LD_PRELOAD=/x\n")
    result = invoke("install", "--root", str(tmp_path / "r"), "--env-file", str(env))
    assert result.exit_code == 1
    assert SECRET_LICENSE not in result.output














