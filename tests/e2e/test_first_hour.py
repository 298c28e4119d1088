"""What a new operator meets in the first hour (issue 23), on a real host: a loopback address
that the workers' containers cannot reach, the agent forgetting units that are gone, and a
resolver that answers nothing."""

from __future__ import annotations

import time

import pytest

from .operator import ENV_SOURCE, INSTALLED_ENV, tool, uninstall_everything, write_env
from .standin import start_fake_elasticsearch
from .test_agent import INTERVAL, AgentHost, set_installed


@pytest.fixture
def first_hour(sandbox):
    start_fake_elasticsearch(sandbox)
    since = sandbox.run("date +%s").stdout.strip()
    time.sleep(1)  # --since has a resolution of one second
    yield AgentHost(sandbox, since)
    uninstall_everything(sandbox)


def test_a_loopback_address_is_refused_on_the_bridge_and_probed_as_the_container_sees_it(
        first_hour):
    host = first_hour.host
    write_env(host)  # REDIS_HOST=127.0.0.1, where the host's Redis listens
    refused = tool(host, f"install --env-file {ENV_SOURCE}", check=False)
    assert refused.returncode == 1
    assert "REDIS_HOST=127.0.0.1 is a loopback address" in refused.stderr
    assert "--network host" in refused.stderr
    assert host.run("ls /etc/systemd/system/tracardi-*.service", check=False).returncode != 0

    # Installed on the bridge with an address of the network, then the installed file
    # edited by hand to 127.0.0.1: Redis listens there on the host, not in a container.
    write_env(host, REDIS_HOST="10.99.0.7", ELASTIC_HOST="http://10.99.0.5:9200")
    tool(host, f"install --env-file {ENV_SOURCE} --agent-interval {INTERVAL} --start")
    host.wait_until("systemctl is-active -q tracardi-agent", timeout=30)
    assert host.run("redis-cli -h 127.0.0.1 ping").stdout.strip() == "PONG"
    set_installed(host, "REDIS_HOST", "127.0.0.1")
    redis = "'TRACARDI_DEPENDENCY=redis 127.0.0.1:6379'"
    first_hour.wait_for_entry("TRACARDI_ACTION=reloaded", timeout=30)
    first_hour.wait_for_entry("TRACARDI_ACTION=unreachable", redis, timeout=30)
    time.sleep(3 * INTERVAL)
    assert first_hour.entries("TRACARDI_ACTION=reachable", redis) == []
    assert host.run(f"grep -c REDIS_HOST=127.0.0.1 {INSTALLED_ENV}").stdout.strip() == "1"
