"""`uninstall --purge` after a real run leaves nothing of the tool's on the host."""

from __future__ import annotations

from .host import Host
from .operator import (
    install,
    start_all,
    tool,
    uninstall_everything,
    wait_no_labelled_container,
    write_env,
)
from .sandbox import Sandbox

# Every place the tool or systemd on its behalf may write, less what churns by itself.
WATCHED = "/etc /var /run /opt /usr/local /root"
CHURN = ("/var/lib/docker", "/var/lib/containerd", "/var/log", "/var/lib/systemd",
         "/var/cache", "/var/tmp", "/run/systemd", "/run/user", "/run/docker",
         "/run/containerd", "/run/log", "/run/udev", "/run/credentials")


def files(host: Host) -> set[str]:
    prune = " -o ".join(f"-path {path}" for path in CHURN)
    # Only those that exist: removing a deb may take /opt with it (Debian 13 ships none).
    existing = f"$(for d in {WATCHED}; do [ -e $d ] && echo $d; done)"
    out = host.run(f"find {existing} -xdev \\( {prune} \\) -prune -o -print").stdout
    return set(out.split("\n"))


def purge_leaves_nothing(host: Host, before: set[str], also_churn: tuple[str, ...] = (),
                         engine: str = "docker") -> None:
    """`uninstall --purge` warns of nothing and leaves no file that was not there `before`
    (but under `also_churn`), no unit and no labelled container (of `engine`). The VM tier
    runs it too."""
    result = tool(host, "uninstall --purge")

    assert "warning" not in result.stdout + result.stderr
    left = sorted(path for path in files(host) - before if not path.startswith(also_churn))
    assert left == [], f"left behind: {left}"
    host.wait_until("[ -z \"$(systemctl list-units --all --no-legend 'tracardi*')\" ]")
    wait_no_labelled_container(host, engine=engine)


def test_uninstall_purge_after_a_run_leaves_nothing(sandbox: Sandbox) -> None:
    host = sandbox
    write_env(host, STANDIN_FAIL_SCHEDULER="1")  # one unit ends up failed
    before = files(host)
    try:
        install(host, "--agent-interval 2")
        host.run("systemctl start tracardi.target")
        host.wait_until("systemctl is-failed -q tracardi-scheduler", timeout=60)
        host.wait_until("test -s /run/tracardi-systemd/agent-state.json", timeout=30)

        purge_leaves_nothing(host, before)
    finally:
        uninstall_everything(host)


def test_uninstall_without_purge_keeps_only_the_env_file_and_its_record(
        sandbox: Sandbox) -> None:
    host = sandbox
    write_env(host)
    before = files(host)
    try:
        install(host)
        start_all(host)

        tool(host, "uninstall")

        assert sorted(files(host) - before) == [
            "/etc/tracardi", "/etc/tracardi/.env-docker",
            # what a later `uninstall --purge` reads to remove the file
            "/var/lib/tracardi-systemd", "/var/lib/tracardi-systemd/kept.json"]
        tool(host, "uninstall --purge")
        assert files(host) == before
    finally:
        uninstall_everything(host)
