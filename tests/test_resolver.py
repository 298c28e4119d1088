"""The agent's probes resolve names within a deadline whatever the DNS does: a resolver that
answers nothing must not hold a cycle past the watchdog."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tracardi_systemd.spec.addresses import Dependency, Resolver, probe


@pytest.fixture
def dead_dns(monkeypatch):
    """getaddrinfo that never answers for a name (as with every DNS server gone), counted;
    released at the end so no thread outlives the test."""
    release, calls = threading.Event(), []
    real = socket.getaddrinfo

    def hanging(host, *args, **kwargs):
        if host.replace(".", "").isdigit():
            return real(host, *args, **kwargs)
        calls.append(host)
        release.wait()
        raise socket.gaierror(socket.EAI_AGAIN, "no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    yield calls
    release.set()


def timed(call) -> tuple[object, float]:
    box: list = []
    start = time.monotonic()
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)
    worker.start()
    worker.join(10)
    return (box[0] if box else None), time.monotonic() - start


def test_a_probe_of_a_name_returns_in_time_when_dns_answers_nothing(dead_dns):
    es = Dependency("elasticsearch", (("es", 9200),))
    found, took = timed(lambda: probe([es], timeout=1.0, resolver=Resolver(deadline=0.3)))
    assert found == {"elasticsearch": False}
    assert took < 1.5


def test_the_default_probe_is_bounded_too(dead_dns):
    """What the agent runs (the module's resolver): create_connection(timeout=1) alone
    waited for getaddrinfo as long as the resolver hung."""
    found, took = timed(lambda: probe([Dependency("redis es:6379", (("es", 6379),))]))
    assert found == {"redis es:6379": False}
    assert took < 3


def test_a_hung_lookup_is_not_started_again_every_cycle(dead_dns):
    resolver = Resolver(deadline=0.1)
    for _ in range(5):
        assert resolver.resolve(("es", 9200)) == []
    assert dead_dns == ["es"]


def test_many_names_share_one_budget(dead_dns):
    deps = [Dependency(f"redis r{i}:6379", ((f"r{i}", 6379),)) for i in range(20)]
    found, took = timed(lambda: probe(deps, timeout=1.0, budget=2.0,
                                      resolver=Resolver(deadline=1.0)))
    assert found is not None and not any(found.values())
    assert took < 3


def test_the_last_answer_is_used_while_the_resolver_hangs():
    """Redis still up while DNS is down: no false outage, no hold."""
    answer = threading.Event()
    answer.set()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def lookup(host, port_):
            if not answer.is_set():
                threading.Event().wait(5)
            return [(socket.AF_INET, ("127.0.0.1", port_))]

        resolver = Resolver(deadline=0.2, lookup=lookup)
        redis = Dependency(f"redis redis:{port}", (("redis", port),))
        assert probe([redis], resolver=resolver) == {redis.name: True}
        answer.clear()
        start = time.monotonic()
        assert probe([redis], resolver=resolver) == {redis.name: True}
        assert time.monotonic() - start < 1
