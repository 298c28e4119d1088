"""`install` killed with SIGKILL at random moments: every unit file is the old or the new
one, the manifest is whole, and the next install repairs everything without --force."""

from __future__ import annotations

import json
import random
import shlex

from .operator import ENV_SOURCE, TOOL, uninstall_everything, write_env
from .sandbox import Sandbox

KILLS = 20
UNIT_DIR = "/etc/systemd/system"
COMMON = f"--env-file {ENV_SOURCE} --network host --agent-program {TOOL}"


def rendered(host: Sandbox, stop_timeout: int) -> dict[str, str]:
    out = f"/tmp/rendered-{stop_timeout}"
    host.run(f"rm -rf {out} && {TOOL} render {COMMON} --stop-timeout {stop_timeout} "
             f"--out {out} >/dev/null")
    listing = host.run(f"cd {out} && for f in *; do echo \"$f\"; done").stdout.split()
    return {name: host.run(f"cat {out}/{shlex.quote(name)}").stdout for name in listing}


def on_disk(host: Sandbox, names: set[str]) -> dict[str, str | None]:
    found = {}
    for name in names:
        result = host.run(f"cat {UNIT_DIR}/{name}", check=False)
        found[name] = result.stdout if result.returncode == 0 else None
    return found


def test_install_killed_at_random_moments_leaves_old_or_new_and_repairs(sandbox):
    host = sandbox
    write_env(host)
    versions = {timeout: rendered(host, timeout) for timeout in (11, 12)}
    names = set(versions[11])
    host.run(f"{TOOL} install {COMMON} --stop-timeout 11")
    chance = random.Random(17)
    try:
        for kill in range(KILLS):
            timeout = 12 if kill % 2 == 0 else 11
            delay = chance.uniform(0.05, 0.9)
            host.run(f"{TOOL} install {COMMON} --stop-timeout {timeout} >/dev/null 2>&1 & "
                     f"sleep {delay:.3f}; kill -9 $! 2>/dev/null; wait", check=False)
            files = on_disk(host, names)
            for name, text in files.items():
                assert text in (versions[11][name], versions[12][name]), (kill, name)
            manifest = json.loads(host.run(
                "cat /var/lib/tracardi-systemd/manifest.json").stdout)
            assert set(manifest["files"]) == names
        result = host.run(f"{TOOL} install {COMMON} --stop-timeout 11", check=False)
        assert result.returncode == 0, result.stderr
        assert on_disk(host, names) == versions[11]
        assert host.run("ls -a /etc/systemd/system | grep -c '\\.tmp$' || true"
                        ).stdout.strip() == "0"
    finally:
        uninstall_everything(host)
