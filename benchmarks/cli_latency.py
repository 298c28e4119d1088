"""Latency of the command line (issue 6, item 4).

    .venv/bin/python benchmarks/cli_latency.py

Run inside the sandbox (install and status need root and a running systemd), with the 5
workers installed and running. Each command is run RUNS times from a Python timing loop
(wall time of the whole process, perf_counter); the median is reported. `install` with
nothing to change is timed twice: as is, and with a no-op `systemctl` first on PATH (the
tool runs `systemctl` by name), which is "without the systemctl calls" of the target.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from common import (
    ENV_SOURCE,
    TOOL,
    VENV_PYTHON,
    emit,
    install,
    log,
    machine,
    median,
    ms,
    sandbox_host,
    table,
    verdict,
)

RUNS = 10
SHIM_DIR = "/tmp/noop-systemctl"
RENDER = f"{TOOL} render --env-file {ENV_SOURCE} --network host --out /tmp/rendered"
MIN_IMPORT = 0.003  # direct imports of the cli cheaper than this are not listed


# ---------------------------------------------------------------- inside the sandbox

def timed(cmd: str, runs: int = RUNS, env: dict | None = None) -> list[float]:
    subprocess.run(cmd, shell=True, capture_output=True, env=env, check=False)  # warm caches
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(cmd, shell=True, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - began)
    return times


def import_times() -> dict[str, float]:
    """Cumulative import time (s) of `tracardi_systemd.cli.main` and of each module it imports
    directly, best of 3 runs of `python -X importtime`."""
    best: dict[str, float] = {}
    for _ in range(3):
        err = subprocess.run([VENV_PYTHON, "-X", "importtime", "-c",
                              "import tracardi_systemd.cli.main"],
                             capture_output=True, text=True, check=True).stderr
        children: dict[str, float] = {}
        for line in err.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
            if not match:
                continue
            seconds, level, name = int(match[1]) / 1e6, len(match[2]) // 2, match[3]
            if level == 1:
                children[name] = seconds
            elif level == 0:
                if name == "tracardi_systemd.cli.main":
                    children[name] = seconds
                    for child, value in children.items():
                        best[child] = min(best.get(child, value), value)
                children = {}
    return {name: value for name, value in best.items()
            if value >= MIN_IMPORT or name == "tracardi_systemd.cli.main"}


def cli() -> dict:
    subprocess.run(f"mkdir -p {SHIM_DIR} && printf '#!/bin/sh\\nexit 0\\n' > {SHIM_DIR}/systemctl"
                   f" && chmod 755 {SHIM_DIR}/systemctl", shell=True, check=True)
    install = f"{TOOL} install --env-file {ENV_SOURCE} --network host"
    shimmed = {"PATH": f"{SHIM_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    result = {
        "python -c pass (interpreter start)": timed(f"{VENV_PYTHON} -c pass"),
        "python -c 'import click'": timed(f"{VENV_PYTHON} -c 'import click'"),
        "--help": timed(f"{TOOL} --help"),
        "render (5 workers)": timed(RENDER),
        "install, nothing to change": timed(install),
        "install, nothing to change, no-op systemctl": timed(install, env=shimmed),
        "status (5 workers running)": timed(f"{TOOL} status"),
    }
    growth = {}
    for units in (1, 10, 100, 1000):
        replicas = f"--worker scheduler --replicas scheduler={units}" if units > 1 else \
            "--worker scheduler"
        growth[units] = {
            "render": timed(f"{RENDER}-{units} {replicas}", runs=5),
            "install": timed(f"{TOOL} install --env-file {ENV_SOURCE} --root /tmp/root-{units} "
                             f"--network host {replicas}", runs=5, env=shimmed),
        }
    return {"commands": result, "growth": growth, "imports": import_times()}


# ---------------------------------------------------------------- outside

def measure() -> dict:
    from common import inside

    with sandbox_host() as host:
        install(host)
        host.run("systemctl start tracardi.target")
        host.wait_until(f"{TOOL} status >/dev/null", timeout=60)
        log("timing the commands")
        result = inside(host, __file__, "cli")
        log("shutting down")
    log("done")
    return result


def report(result: dict) -> str:
    commands = result["commands"]
    targets = {"--help": 0.150, "install, nothing to change, no-op systemctl": 0.300}
    rows = []
    for name, times in commands.items():
        target = targets.get(name)
        rows.append([f"`{name}`" if name.startswith("--") else name, ms(median(times)),
                     ms(min(times)),
                     f"< {ms(target)}: {verdict(median(times) < target)}" if target else "-"])
    growth_rows = []
    for units, times in result["growth"].items():
        render = median(times["render"])
        growth_rows.append([units, ms(render), ms(median(times["install"])),
                            f"< 1 s: {verdict(render < 1.0)}" if str(units) == "1000" else "-"])
    imports = result["imports"]
    import_rows = [[f"`{name}`", ms(seconds)] for name, seconds in
                   sorted(imports.items(), key=lambda item: -item[1])]
    return "\n".join([
        f"### Command line latency (median of {RUNS} runs; wall time of the process)", "",
        table(["command", "median", "fastest", "target"], rows), "",
        "### Growth with the number of units (`--worker scheduler --replicas scheduler=N`; "
        "median of 5)", "",
        table(["units", "render", "install --root DIR, no-op systemctl (2nd+ run)", "target"],
              growth_rows), "",
        "### What `import tracardi_systemd.cli.main` costs, and its direct imports over "
        f"{MIN_IMPORT * 1000:.0f} ms (cumulative, best of 3, `python -X importtime`)", "",
        table(["module (with what it imports)", "import time"], import_rows), "",
        "Every command pays these before doing anything, `--help` included.",
    ])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        emit(cli())
        return
    result = measure()
    print(f"Machine: {machine()}\n")
    print(report(result))


if __name__ == "__main__":
    main()
