"""The event-driven agent loop: Docker events wake it, systemd is asked only when
something happened or is in flux, a broken stream is reopened; with fakes for the host and
a fake event stream."""

from __future__ import annotations

import io
import signal
import threading
import time

from fakes import FakeEngine, FakeSystemctl, inspected, unit_props

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.agent.loop import Agent, InputFiles, stop_on_signals
from tracardi_systemd.agent.policy import Config
from tracardi_systemd.agent.watch import Stop, Watcher
from tracardi_systemd.host.engine import EngineError, StreamClosed
from tracardi_systemd.host.journal import Journal
from tracardi_systemd.install.manifest import Manifest
from tracardi_systemd.names import AGENT_UNIT, DOCKER_UNIT, TARGET

UNITS = ["tracardi-scheduler.service", "tracardi-trigger.service"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStream:
    """Hands over the queued events, then waits out the timeout (advancing the clock), or
    breaks if it `closes`; its reconnect is the stream `resumed_by` (an error when None)."""

    def __init__(self, clock: Clock, events: list[dict] | None = None, closes: bool = False,
                 resumed_by: FakeStream | None = None):
        self.clock, self.events, self.closes = clock, list(events or []), closes
        self.resumed_by = resumed_by
        self.closed = False
        self.reconnects = 0

    def poll(self, timeout: float):
        if self.events:
            return self.events.pop(0)
        if self.closes:
            raise StreamClosed("GET /events", "the connection ended")
        self.clock.now += timeout
        return None

    def within(self, seconds: float):
        while self.events:
            yield self.events.pop(0)

    def reconnect(self) -> FakeStream:
        self.reconnects += 1
        self.closed = True
        if self.resumed_by is None:
            raise EngineError("GET /events", "dockerd does not answer")
        return self.resumed_by

    def close(self) -> None:
        self.closed = True


class StreamingEngine(FakeEngine):
    def __init__(self, entries, streams: list):
        super().__init__(entries)
        self.streams = streams
        self.opened = 0

    def events(self, **_: object):
        self.opened += 1
        if not self.streams:
            raise EngineError("GET /events", "dockerd does not answer")
        return self.streams.pop(0)


def die(name: str, code: str = "137") -> dict:
    return {"Action": "die", "Actor": {"Attributes": {
        "name": name, "exitCode": code, "tracardi.unit": f"{name}.service"}}}


def rig(tmp_path, streams: list, clock: Clock):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(Manifest(unit_dir="/etc/systemd/system", env_file="/e",
                                 tracardi_version="0.8.1",
                                 units=[TARGET, AGENT_UNIT, *UNITS]).to_json())
    env = tmp_path / "env"
    env.write_text("REDIS_HOST=127.0.0.1\n")
    systemctl = FakeSystemctl({u: unit_props() for u in [*UNITS, DOCKER_UNIT, TARGET]})
    engine = StreamingEngine([inspected(u, pid=0) for u in UNITS], streams)
    stderr = io.StringIO()
    journal = Journal(str(tmp_path / "nosocket"), stderr)
    agent = Agent(InputFiles(manifest, env), systemctl, engine, lambda deps: {}, journal,
                  Config(), state_file=tmp_path / "state.json", clock=clock)
    def sleep(stop: threading.Event, seconds: float) -> None:
        clock.now += seconds

    return agent, systemctl, engine, Watcher(engine, journal, clock, sleep), stderr


def run_for(agent: Agent, watcher: Watcher, clock: Clock, seconds: float) -> None:
    stop = Stop()
    end = clock.now + seconds
    real_wait = watcher.wait

    def wait(deadline, stop_flag, docker_active):
        if clock.now >= end:
            stop.set()
            return False
        return real_wait(deadline, stop_flag, docker_active)

    watcher.wait = wait
    agent.run(stop, watcher, interval=10.0, reconcile_every=60.0)


def test_while_settled_systemd_is_asked_once_a_minute_and_docker_every_tick(tmp_path):
    clock = Clock()
    agent, systemctl, engine, watcher, _ = rig(tmp_path, [FakeStream(clock)], clock)
    run_for(agent, watcher, clock, 300)
    ticks = len(engine.listings)
    assert 29 <= ticks <= 31  # every 10 s
    assert 5 <= len(systemctl.shows) + len(systemctl.state_lists) <= 7  # every 60 s (+ the first)
    assert len(systemctl.shows) == 1  # every unit's properties once; then states only
    assert engine.opened == 1  # one long-lived stream


def test_a_death_wakes_the_agent_at_once_and_makes_it_ask_systemd(tmp_path):
    clock = Clock()
    stream = FakeStream(clock, [die("tracardi-trigger")])
    agent, systemctl, _, watcher, stderr = rig(tmp_path, [stream], clock)
    run_for(agent, watcher, clock, 5)  # less than one interval
    assert len(systemctl.shows) == 1  # the first cycle
    assert len(systemctl.state_lists) == 1  # the one the event caused
    assert "<6>container tracardi-trigger died (exit status 137)" in stderr.getvalue()


def test_a_death_is_in_the_journal_before_the_rest_of_its_burst_is_gathered(tmp_path):
    clock = Clock()
    seen_while_gathering = []

    class SettlingStream(FakeStream):
        def within(self, seconds: float):
            seen_while_gathering.append(stderr.getvalue())  # 0.2 s of waiting, for real
            yield from super().within(seconds)

    stream = SettlingStream(clock, [die("tracardi-trigger")])
    agent, _, _, watcher, stderr = rig(tmp_path, [stream], clock)
    run_for(agent, watcher, clock, 5)
    assert "container tracardi-trigger died" in seen_while_gathering[0]


def test_a_health_verdict_wakes_the_agent_without_asking_systemd(tmp_path):
    clock = Clock()
    healthy = {"Action": "health_status: healthy",
               "Actor": {"Attributes": {"name": "tracardi-trigger"}}}
    stream = FakeStream(clock, [healthy])
    agent, systemctl, engine, watcher, _ = rig(tmp_path, [stream], clock)
    run_for(agent, watcher, clock, 5)
    assert len(engine.listings) >= 2  # the first cycle, then the one the event caused
    assert len(systemctl.shows) == 1  # only the first
    assert systemctl.state_lists == []


def test_a_broken_stream_is_resumed_and_the_agent_reconciles_in_full(tmp_path):
    """Resumed, not opened anew: the deaths in the gap reach the journal, and none twice
    (test_podman_recorded.py has what a resumed stream hands over)."""
    clock = Clock()
    gap = FakeStream(clock, [die("tracardi-trigger")])
    broken = FakeStream(clock, closes=True, resumed_by=gap)
    agent, systemctl, engine, watcher, stderr = rig(tmp_path, [broken], clock)
    run_for(agent, watcher, clock, 30)
    assert (engine.opened, broken.reconnects) == (1, 1)
    assert "container tracardi-trigger died (exit status 137)" in stderr.getvalue()
    assert len(systemctl.shows) + len(systemctl.state_lists) >= 2


def test_a_stream_that_cannot_be_resumed_is_tried_again_from_where_it_broke(tmp_path):
    clock = Clock()
    broken = FakeStream(clock, closes=True)
    agent, _, engine, watcher, _ = rig(tmp_path, [broken], clock)
    run_for(agent, watcher, clock, 30)
    assert engine.opened == 1 and broken.reconnects >= 2


def test_no_stream_is_opened_while_docker_service_is_stopped(tmp_path):
    clock = Clock()
    agent, systemctl, engine, watcher, _ = rig(tmp_path, [FakeStream(clock)], clock)
    systemctl.units[DOCKER_UNIT] = unit_props("inactive", "dead")
    run_for(agent, watcher, clock, 60)
    assert engine.opened == 0  # connecting would start docker through docker.socket
    assert engine.listings == []


def test_an_oom_kill_is_a_warning(tmp_path):
    clock = Clock()
    oom = {"Action": "oom", "Actor": {"Attributes": {"name": "tracardi-trigger"}}}
    agent, _, _, watcher, stderr = rig(tmp_path, [FakeStream(clock, [oom])], clock)
    run_for(agent, watcher, clock, 5)
    assert "<4>container tracardi-trigger ran out of memory" in stderr.getvalue()
    assert EntryKind.CONTAINER_DIED.value  # one MESSAGE_ID for deaths of either kind


def test_a_stop_signal_ends_a_wait_at_once_and_never_cuts_a_cycle_short(tmp_path):
    clock = Clock()
    finished = []

    class BlockingStream(FakeStream):
        def poll(self, timeout: float):
            time.sleep(timeout)  # a read of the socket that nothing answers
            finished.append(timeout)

    stream = BlockingStream(clock)
    _, _, _, watcher, _ = rig(tmp_path, [stream], clock)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = stop_on_signals()
        stop.handle()  # between cycles: the flag only
        assert stop.is_set()
        stop.clear()
        main = threading.main_thread().ident
        threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGTERM)).start()
        assert watcher.wait(clock.now + 60, stop, docker_active=True) is False
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert stop.is_set()
    assert finished == []  # the 60 s read was cut short by the signal


def test_after_a_failed_cycle_the_stream_is_not_reopened_on_a_stale_view(tmp_path):
    """docker stopping: the stream ends, then the next cycle's Engine call fails although
    systemd said `active` a moment before. Reopening the stream then would start docker
    again through docker.socket; it waits for a cycle that asked systemd afresh."""
    clock = Clock()
    broken = FakeStream(clock, closes=True)
    agent, _, engine, watcher, _ = rig(tmp_path, [broken], clock)
    calls = 0
    listing = engine.containers

    def gone_after_the_first(label: str, all: bool = True) -> list[dict]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise EngineError("GET /containers/json", "dockerd went away")
        return listing(label, all)

    engine.containers = gone_after_the_first  # type: ignore[method-assign]
    run_for(agent, watcher, clock, 60)
    assert calls > 3  # the agent kept trying its cycle...
    assert engine.opened == 1  # ...but never reconnected the stream on a stale view
    assert broken.reconnects == 0


def test_while_the_stream_cannot_be_opened_systemd_is_asked_every_tick(tmp_path):
    """A stream that fails to open may mean docker is stopping: each next cycle asks
    systemd before it calls Docker, or a list call would start docker again."""
    clock = Clock()
    agent, systemctl, engine, watcher, _ = rig(tmp_path, [], clock)
    run_for(agent, watcher, clock, 60)
    assert engine.opened >= 5
    assert len(systemctl.shows) + len(systemctl.state_lists) >= len(engine.listings) - 1
