"""The catalogs after 0.8.1: 0.8.2 (Pulsar) and 0.9.0 to 1.2.x (one background-worker image
in several roles, MySQL and Pulsar, a run-once init), with their scheduled jobs."""

import pytest

from tracardi_systemd import names
from tracardi_systemd.spec.catalog import (
    CATALOG,
    INIT,
    MYSQL,
    PULSAR,
    CatalogError,
    entries_for,
    image_tag_for,
    select_workers,
    workers_for,
)

VERSIONS = list(CATALOG)
FROM_09 = ["0.9.0", "1.0.0", "1.1.0", "1.2.0"]


def by_name(version: str) -> dict:
    return {w.name: w for w in entries_for(version)}


def test_every_release_and_the_tag_its_charts_give_the_images():
    assert {v: image_tag_for(v) for v in VERSIONS} == {
        "0.8.1": "0.8.1", "0.8.2": "0.8.2.1", "0.9.0": "0.9.0.3", "1.0.0": "1.0.0",
        "1.1.0": "1.1.0", "1.2.0": "1.2.x"}


def test_an_unknown_version_names_every_known_one():
    with pytest.raises(CatalogError) as caught:
        entries_for("1.3.0")
    assert str(caught.value) == ("Tracardi version '1.3.0' is not in the catalog "
                                 "(known: 0.8.1, 0.8.2, 0.9.0, 1.0.0, 1.1.0, 1.2.0)")


@pytest.mark.parametrize("version", VERSIONS)
def test_names_are_unique_and_every_unit_name_is_one_the_manifest_accepts(version):
    entries = entries_for(version)
    assert len({w.name for w in entries}) == len(entries)
    for worker in entries:
        assert worker.description.strip()
        assert names.is_unit_file_name(worker.unit)
        assert names.is_unit_file_name(names.unit_file(worker.name, template=True))
        assert names.is_unit_file_name(names.instance_units(worker.name, 3)[2])


@pytest.mark.parametrize("version", VERSIONS)
def test_what_an_entry_requires_is_in_the_same_release_and_runs_once(version):
    entries = by_name(version)
    for worker in entries.values():
        for required in worker.requires:
            assert entries[required].kind == "run-once"


@pytest.mark.parametrize("version", VERSIONS)
def test_only_long_running_workers_are_what_the_agent_supervises(version):
    supervised = workers_for(version)
    assert {w.kind for w in supervised} == {"service"}
    assert all(names.is_worker_unit(w.unit) for w in supervised)
    others = [w for w in entries_for(version) if w.kind != "service"]
    assert not any(names.is_worker_unit(w.unit) for w in others)


@pytest.mark.parametrize("version", VERSIONS)
def test_scheduled_jobs_have_a_schedule_and_nothing_else_has_one(version):
    for worker in entries_for(version):
        assert (worker.schedule is not None) == (worker.kind == "scheduled")


# --- the update worker: Celery in 0.8.x, huey from 0.9 -----------------------------------


@pytest.mark.parametrize("version", ["0.8.1", "0.8.2"])
def test_the_08x_update_worker_takes_the_redis_port_from_redis_host_and_keeps_the_ping(
        version):
    update = by_name(version)["update"]
    assert update.redis.port_from == "REDIS_HOST"
    assert "inspect ping" in update.liveness.command
    assert (update.required_settings, update.commercial) == (("REDIS_HOST",), False)


@pytest.mark.parametrize("version", FROM_09)
def test_from_09_the_update_worker_is_huey_reads_redis_port_and_needs_mysql(version):
    update = by_name(version)["update"]
    assert update.redis.port_from == "REDIS_PORT"
    assert update.liveness is None  # no sound check is known for a huey consumer
    assert update.needs(MYSQL) and not update.commercial and not update.requires


# --- 0.8.2 ---------------------------------------------------------------------------------


def test_082_splits_the_work_over_pulsar_workers_and_drops_trigger():
    entries = by_name("0.8.2")
    assert "trigger" not in entries
    for name in ("scheduler", "storage-event", "workflow", "outbound-profile", "metrics",
                 "visit-end-checker", "visit-ended"):
        assert entries[name].needs(PULSAR) and "PULSAR_HOST" in entries[name].required_settings
    assert entries["flusher-session"].environment == {"CONSUMER_TYPE": "session"}
    assert entries["storage-profile"].defaults == {"PULSAR_COLLECTOR_POOL": "500"}
    assert entries["workflow"].environment == {"CONSUMER_TYPE": "event"}
    assert entries["apm"].environment == {"MODE": "worker"}
    assert entries["apm"].defaults == {"PAUSE": "15"} and not entries["apm"].commercial


def test_082_jobs_run_on_the_charts_schedules_and_workflow_segmentation_is_off():
    jobs = {w.name: (w.image, w.schedule.cron, w.default)
            for w in entries_for("0.8.2") if w.kind == "scheduled"}
    assert jobs == {
        "metrics-job": ("tracardi/com-metrics-job", "*/30 * * * *", True),
        "cond-segmentation-job": ("tracardi/com-cond-segmentation-job", "*/10 * * * *", True),
        "wf-segmentation-job": ("tracardi/com-wf-segmentation-job", "*/15 * * * *", False),
    }
    assert "wf-segmentation-job" not in {w.name for w in select_workers("0.8.2")}


def test_081_heartbeat_jobs_carry_their_schedule_entry_as_fixed_settings():
    jobs = {w.name: w for w in entries_for("0.8.1") if w.kind == "scheduled"}
    visit_end = jobs["heartbeat-visit-end"]
    assert visit_end.schedule.on_calendar == "*:00/20"
    assert visit_end.environment["QUALIFY_BY"] == "visit-end"
    assert visit_end.environment["SKIP_SECONDS"] == "900"
    assert jobs["heartbeat-profile-segmentation"].schedule.cron == "*/30 * * * *"


# --- 0.9.0 to 1.2.x ------------------------------------------------------------------------


@pytest.mark.parametrize("version", FROM_09)
def test_from_09_every_commercial_container_requires_init(version):
    entries = by_name(version)
    init = entries.pop(INIT)
    assert (init.kind, init.image, init.commercial) == ("run-once", "tracardi/init", True)
    assert init.unit == names.INIT_UNIT
    for worker in entries.values():
        assert worker.requires == ((INIT,) if worker.commercial else ())


@pytest.mark.parametrize(("version", "roles", "on"), [
    ("1.1.0", {"function", "collector", "workflow"}, {"function"}),
    ("1.2.0", {"function", "collector", "workflow", "logger", "destination"},
     {"function", "logger", "destination"}),
])
def test_one_image_several_roles_each_with_its_consumer_type(version, roles, on):
    background = [w for w in entries_for(version) if w.image == "tracardi/background-worker"]
    assert {w.name.removeprefix("background-") for w in background} == roles
    for worker in background:
        role = worker.name.removeprefix("background-")
        assert worker.environment == {"CONSUMER_TYPE": f"system.{role}"}
        assert worker.needs(MYSQL) and worker.needs(PULSAR)
        assert {"MYSQL_HOST", "PULSAR_HOST", "PULSAR_API"} <= set(worker.required_settings)
        assert worker.default == (role in on)


@pytest.mark.parametrize("version", ["0.9.0", "1.0.0"])
def test_09_and_10_run_one_background_worker_without_a_role_and_coping_off(version):
    entries = by_name(version)
    assert entries["background"].environment == {}
    assert not entries["post-collection"].default


def test_naming_a_role_brings_init_along_and_nothing_else():
    picked = select_workers("1.2.0", ["background-collector"])
    assert [w.name for w in picked] == ["init", "background-collector"]
    assert [w.name for w in select_workers("1.2.0", ["update"])] == ["update"]


def test_the_default_selection_of_12_is_what_its_chart_enables():
    assert [w.name for w in select_workers("1.2.0")] == [
        "init", "background-function", "background-logger", "background-destination", "apm",
        "update"]
    assert select_workers("1.2.0", ["all"]) == select_workers("1.2.0")
