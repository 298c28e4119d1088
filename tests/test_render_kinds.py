"""Rendering the releases after 0.8.1: roles as units of their own, the run-once init the
commercial workers require, scheduled jobs as a timer and a oneshot service.

Regenerate the golden files after an intended change with
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render_kinds.py
"""

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tracardi_systemd import names
from tracardi_systemd.render.escape import UnsafeValue
from tracardi_systemd.render.units import RenderSettings, render, worker_units
from tracardi_systemd.spec.catalog import CATALOG, entries_for, select_workers

GOLDEN = Path(__file__).parent / "golden"
KEYS_12 = ("ELASTIC_HOST", "REDIS_HOST", "REDIS_PORT", "MYSQL_HOST", "MYSQL_PASSWORD",
           "PULSAR_HOST", "PULSAR_API", "CONSUMER_TYPE", "API_LICENSE")
SETTINGS_12 = RenderSettings(version="1.2.0", workers=select_workers("1.2.0"), env_keys=KEYS_12)
JOBS_081 = RenderSettings(version="0.8.1", workers=select_workers("0.8.1", ["heartbeat-visit-end"]),
                          env_keys=("ELASTIC_HOST", "REDIS_HOST", "API_LICENSE"))
GOLDEN_SETS = {"1.2.0": SETTINGS_12, "0.8.1-jobs": JOBS_081}


def directive(text: str, name: str) -> list[str]:
    return re.findall(rf"(?m)^{re.escape(name)}=(.*)$", text)


def passed_env(text: str) -> list[str]:
    return re.findall(r"(?m)^\s*-e (\S+)", text)


@pytest.mark.parametrize("name", GOLDEN_SETS)
def test_units_match_the_golden_files(name):
    files = render(GOLDEN_SETS[name])
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.mkdir(parents=True, exist_ok=True)
        for stale in golden.iterdir():
            stale.unlink()
        for file, text in files.items():
            (golden / file).write_text(text)
    assert sorted(p.name for p in golden.iterdir()) == sorted(files)
    for file, text in files.items():
        assert text == (golden / file).read_text(), file


@pytest.mark.parametrize("version", list(CATALOG))
def test_every_entry_of_every_release_passes_systemd_analyze_verify(version, tool_path,
                                                                     verify, tmp_path):
    entries = entries_for(version)
    replicated = next(w.name for w in entries if w.kind == "service")
    settings = RenderSettings(version=version, workers=entries, env_keys=KEYS_12,
                              tool=tool_path, replicas={replicated: 2})
    files = render(settings)
    assert all(names.is_unit_file_name(name) for name in files)
    verify(files, tmp_path)


# --- roles ---------------------------------------------------------------------------------


def test_a_role_is_a_unit_of_its_own_with_consumer_type_set_by_the_unit():
    files = render(SETTINGS_12)
    text = files["tracardi-background-logger.service"]
    assert "    -e CONSUMER_TYPE=system.logger \\\n" in text
    # The env file's CONSUMER_TYPE never reaches the container: the role is the unit's.
    assert "CONSUMER_TYPE" not in passed_env(text)
    assert "tracardi/background-worker:1.2.x\n" in text
    assert "--label tracardi.managed=true --label tracardi.worker=background-logger" in text


def test_replicas_are_per_role():
    settings = replace(SETTINGS_12, replicas={"background-function": 3})
    files = render(settings)
    assert "tracardi-background-function@.service" in files
    assert "tracardi-background-logger.service" in files
    units = {u.worker.name: u.instances for u in worker_units(settings)}
    assert units["background-function"] == tuple(
        f"tracardi-background-function@{i}.service" for i in (1, 2, 3))
    assert names.container_name("tracardi-background-function@2.service") == (
        "tracardi-background-function-2")


def test_chart_defaults_are_environment_the_env_file_overrides():
    text = render(replace(SETTINGS_12, workers=select_workers("1.2.0", ["apm"])))[
        "tracardi-apm.service"]
    assert '"PAUSE=900"' in directive(text, "Environment")
    assert text.index("Environment=") < text.index("EnvironmentFile=")
    assert "PAUSE" in passed_env(text) and "-e MODE=worker" in text


def test_a_workers_chart_memory_limit_reaches_the_agent_unless_the_operator_gives_one():
    agent = render(SETTINGS_12)["tracardi-agent.service"]
    assert directive(agent, "ExecStart")[0].endswith(" --memory-limit apm=2500")
    mine = render(replace(SETTINGS_12, memory_limits=("3000",)))["tracardi-agent.service"]
    assert directive(mine, "ExecStart")[0].endswith(" --memory-limit 3000")


# --- init ----------------------------------------------------------------------------------


def test_init_runs_once_and_stays_active_and_the_agent_does_not_own_its_container():
    text = render(SETTINGS_12)["tracardi-init.service"]
    assert directive(text, "Type") == ["oneshot"]
    assert directive(text, "RemainAfterExit") == ["yes"]
    assert not directive(text, "Restart") and not directive(text, "ExecStop")
    assert directive(text, "WantedBy") == ["tracardi.target"]
    assert "tracardi.managed" not in text
    assert "-e LICENSE " in text and "tracardi/init:1.2.x\n" in text


def test_commercial_workers_require_init_and_the_others_do_not():
    files = render(SETTINGS_12)
    for worker in SETTINGS_12.workers:
        if worker.kind != "service":
            continue
        text = files[f"{worker.unit_base}.service"]
        after, requires = directive(text, "After")[0], directive(text, "Requires")[0]
        assert (names.INIT_UNIT in after) == worker.commercial == (names.INIT_UNIT in requires)


def test_a_worker_without_the_init_it_requires_is_refused():
    settings = replace(SETTINGS_12, workers=select_workers("1.2.0")[1:])
    with pytest.raises(UnsafeValue, match="background-function requires init, which is not"):
        render(settings)


def test_a_failed_init_names_in_its_journal_the_units_it_blocks():
    text = render(SETTINGS_12)["tracardi-init.service"]
    line = directive(text, "ExecStopPost")[-1]
    assert line.startswith("-/bin/sh -c ")
    assert line.endswith(" %n tracardi-background-function tracardi-background-logger "
                         "tracardi-background-destination")
    assert "<3>$$0 failed ($$SERVICE_RESULT" in line


# --- scheduled jobs ------------------------------------------------------------------------


def test_a_job_is_a_timer_and_a_oneshot_service_the_timer_starts():
    files = render(JOBS_081)
    timer = files["tracardi-heartbeat-visit-end.timer"]
    assert directive(timer, "OnCalendar") == ["*:00/20"]
    assert directive(timer, "Persistent") == ["true"]
    assert directive(timer, "RandomizedDelaySec") == ["60s"]
    assert directive(timer, "PartOf") == ["tracardi.target"]
    assert directive(timer, "WantedBy") == ["tracardi.target"]
    service = files["tracardi-heartbeat-visit-end.service"]
    assert directive(service, "Type") == ["oneshot"]
    assert "[Install]" not in service  # the timer starts it; install does not enable it
    assert directive(service, "PartOf") == ["tracardi.target"]
    assert '-e "RANGE=now-1M|now"' in service and "tracardi.managed" not in service


def test_install_enables_init_and_timers_never_a_job_service():
    settings = replace(SETTINGS_12, workers=select_workers("0.8.2"), version="0.8.2")
    instances = [i for unit in worker_units(settings) for i in unit.instances]
    assert "tracardi-metrics-job.timer" in instances
    assert "tracardi-metrics-job.service" not in instances
    assert "tracardi-init.service" in [i for u in worker_units(SETTINGS_12) for i in u.instances]


@pytest.mark.parametrize("settings", [replace(SETTINGS_12, replicas={"init": 2}),
                                      replace(JOBS_081, replicas={"heartbeat-visit-end": 2})],
                         ids=["init", "job"])
def test_replicas_of_what_is_not_a_long_running_worker_are_refused(settings):
    name = next(iter(settings.replicas))
    with pytest.raises(UnsafeValue, match=f"--replicas {name}=2: .* has no replicas"):
        render(settings)
