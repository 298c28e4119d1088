#!/usr/bin/env python3
"""Record real `systemctl show` output of systemd 252 from the e2e sandbox.

    sudo .venv/bin/python tests/recorded/record_systemd.py

Boots a sandbox host (tests/e2e/sandbox.py), makes units in the states the agent reads
(running, failed, inactive after running, never loaded) and writes what `systemctl show`
prints for them, with exactly the properties observe.UNIT_PROPERTIES asks for, to
tests/recorded/systemd-252/show.txt.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.e2e.sandbox import Sandbox  # noqa: E402
from tracardi_systemd.observe.read import UNIT_PROPERTIES  # noqa: E402

UNITS = ["rec-running.service", "rec-failed.service", "rec-stopped.service",
         "rec-missing.service", "docker.service"]


def main() -> None:
    with Sandbox.boot() as host:
        host.run("systemd-run -q --unit=rec-running sleep 600")
        host.run("systemd-run -q --unit=rec-failed /bin/false; sleep 1")
        host.run("systemd-run -q --unit=rec-stopped -p RemainAfterExit=no sleep 600 && "
                 "systemctl stop rec-stopped; true")
        properties = ",".join(["Id", *UNIT_PROPERTIES])
        shown = host.run(f"systemctl show --property {properties} -- {' '.join(UNITS)}").stdout
        (HERE / "systemd-252" / "show.txt").write_text(shown)
        print(shown)


if __name__ == "__main__":
    main()
