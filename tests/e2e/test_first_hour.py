"""What a new operator meets in the first hour (issue 23), on a real host: a loopback address
that the workers' containers cannot reach, the agent forgetting units that are gone, and a
resolver that answers nothing."""

from __future__ import annotations

import json
import time

from .operator import ENV_SOURCE, INSTALLED_ENV, tool, write_env
from .test_agent import INTERVAL, set_installed


def test_a_loopback_address_is_refused_on_the_bridge_and_probed_as_the_container_sees_it(
        agent_host):
    host = agent_host.host
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
    agent_host.wait_for_entry("TRACARDI_ACTION=reloaded", timeout=30)
    agent_host.wait_for_entry("TRACARDI_ACTION=unreachable", redis, timeout=30)
    time.sleep(3 * INTERVAL)
    assert agent_host.entries("TRACARDI_ACTION=reachable", redis) == []
    assert host.run(f"grep -c REDIS_HOST=127.0.0.1 {INSTALLED_ENV}").stdout.strip() == "1"


STATE_FILE = "/run/tracardi-systemd/agent-state.json"


def test_the_agent_forgets_units_a_shrinking_reinstall_removed(agent_host):
    host = agent_host.host
    write_env(host, STANDIN_FAIL_SCHEDULER="1")  # the scheduler ends in the agent's backoff
    tool(host, f"install --env-file {ENV_SOURCE} --network host --agent-interval {INTERVAL} "
         "--start")
    agent_host.wait_for_entry("TRACARDI_ACTION=gave_up",
                              "TRACARDI_UNIT=tracardi-scheduler.service", timeout=120)
    host.wait_until(f"grep -q tracardi-scheduler.service {STATE_FILE}", timeout=30)
    pid = agent_pid(host)

    tool(host, f"install --env-file {ENV_SOURCE} --worker update --worker trigger")
    agent_host.wait_for_entry("TRACARDI_ACTION=reloaded", timeout=30)
    host.wait_until(f"! grep -q tracardi-scheduler.service {STATE_FILE}", timeout=30)
    state = json.loads(host.run(f"cat {STATE_FILE}").stdout)
    assert sorted(state["workers"]) == ["tracardi-trigger.service", "tracardi-update.service"]
    assert agent_pid(host) == pid


def agent_pid(host) -> str:
    return host.run("systemctl show -p MainPID --value tracardi-agent").stdout.strip()


# A resolver that answers nothing: a UDP socket on the nameserver's address that reads every
# query and never replies, as when every DNS server of resolv.conf is gone.
SILENT_DNS = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.bind(('127.0.0.1', 53)); [s.recv(512) for _ in iter(int, 1)]")


def test_a_dead_resolver_does_not_get_the_agent_killed_and_its_hold_stays(agent_host):
    host = agent_host.host
    # Helm's way: host names with ELASTIC_SCHEME and ELASTIC_PORT; each would take
    # resolv.conf's timeout x attempts (5 s x 3 here) in getaddrinfo per lookup.
    write_env(host, ELASTIC_HOST="es-1,es-2,es-3", ELASTIC_SCHEME="http", ELASTIC_PORT="9200")
    host.run("cp /etc/resolv.conf /root/resolv.conf.saved")
    try:
        tool(host, f"install --env-file {ENV_SOURCE} --network host "
             f"--agent-interval {INTERVAL} --start")
        host.wait_until("systemctl is-active -q tracardi-agent", timeout=30)
        host.run(f"systemd-run --unit silent-dns python3 -c \"{SILENT_DNS}\"")
        host.run("printf 'nameserver 127.0.0.1\\noptions timeout:5 attempts:3\\n' "
                 "> /etc/resolv.conf")
        pid = agent_pid(host)
        agent_host.wait_for_entry("TRACARDI_ACTION=unreachable",
                                  "TRACARDI_DEPENDENCY=elasticsearch", timeout=60)
        time.sleep(45)  # more than WatchdogSec (30 s): a hung cycle would have been killed
        assert agent_pid(host) == pid
        assert host.run("systemctl show -p NRestarts --value tracardi-agent"
                        ).stdout.strip() == "0"
        # one outage, announced once: a restarted agent would have announced it again
        assert len(agent_host.entries("TRACARDI_ACTION=unreachable",
                                      "TRACARDI_DEPENDENCY=elasticsearch")) == 1
        assert agent_host.entries("MESSAGE_ID=81bd250ed886453dbe1951401b7f1d1a") == []
        status = host.run("systemctl show -p StatusText --value tracardi-agent").stdout
        assert "elasticsearch" in status and "unreachable" in status
    finally:
        host.run("cp /root/resolv.conf.saved /etc/resolv.conf; systemctl stop silent-dns",
                 check=False)
