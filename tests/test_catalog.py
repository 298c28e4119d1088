"""The worker catalog: Tracardi 0.8.1's five workers, and picking some of them."""

import pytest

from tracardi_systemd.spec.catalog import (
    CATALOG,
    DEFAULT_VERSION,
    CatalogError,
    entries_for,
    select_workers,
    workers_for,
)

CORE = ("ELASTIC_HOST", "REDIS_HOST")  # LOGGING_LEVEL is rendered as info when unset
DEPS = ("redis", "elasticsearch")

# The design's table: unit, image, settings, dependencies, commercial.
EXPECTED_081 = [
    ("tracardi-update", "tracardi/update-worker", ("REDIS_HOST",), ("redis",), False),
    ("tracardi-segmentation", "tracardi/com-tracardi-segmentation-worker", CORE, DEPS, True),
    ("tracardi-scheduler", "tracardi/com-tracardi-scheduler-worker", CORE, DEPS, True),
    ("tracardi-post-collection", "tracardi/com-tracardi-coping-worker", CORE, DEPS, True),
    ("tracardi-trigger", "tracardi/com-tracardi-trigger-worker", CORE, DEPS, True),
]


def test_default_version_is_081_and_in_the_catalog():
    assert DEFAULT_VERSION == "0.8.1"
    assert DEFAULT_VERSION in CATALOG


def test_081_has_the_five_workers_of_the_design_table_in_order():
    rows = [(w.unit_base, w.image, w.required_settings, w.dependencies, w.commercial)
            for w in workers_for("0.8.1")]
    assert rows == EXPECTED_081


def test_every_081_worker_has_a_description():
    assert all(w.description.strip() for w in workers_for("0.8.1"))


def test_only_the_update_worker_reads_the_redis_port_from_redis_host():
    port_from = {w.name: w.redis.port_from for w in workers_for("0.8.1")}
    assert port_from.pop("update") == "REDIS_HOST"
    assert set(port_from.values()) == {"REDIS_PORT"}


def test_only_the_celery_update_worker_has_a_liveness_check_and_none_recovers_alone():
    by_name = {w.name: w for w in workers_for("0.8.1")}
    assert "inspect ping -d celery@$HOSTNAME" in by_name.pop("update").liveness.command
    assert {w.liveness for w in by_name.values()} == {None}
    assert not any(w.recovers_after_outage for w in workers_for("0.8.1"))


def test_unknown_version_is_refused_naming_the_known_ones():
    with pytest.raises(CatalogError) as caught:
        workers_for("9.9.9")
    assert "'9.9.9'" in str(caught.value)
    assert "0.8.1" in str(caught.value)


def test_select_with_unknown_version_is_refused():
    with pytest.raises(CatalogError, match=r"9\.9\.9"):
        select_workers("9.9.9", ["update"])


def test_unknown_worker_is_refused_naming_the_known_ones():
    with pytest.raises(CatalogError) as caught:
        select_workers("0.8.1", ["update", "bogus"])
    message = str(caught.value)
    assert "'bogus'" in message
    assert "update" in message and "post-collection" in message


def test_no_names_selects_every_entry_on_by_default():
    assert select_workers("0.8.1") == entries_for("0.8.1")
    assert select_workers("0.8.1", []) == entries_for("0.8.1")


@pytest.mark.parametrize("names", [["scheduler"], ["tracardi-scheduler"]])
def test_select_by_name_or_by_unit_name(names):
    assert [w.name for w in select_workers("0.8.1", names)] == ["scheduler"]


def test_selection_keeps_catalog_order_and_drops_duplicates():
    picked = select_workers("0.8.1", ["trigger", "tracardi-update", "scheduler", "update"])
    assert [w.name for w in picked] == ["update", "scheduler", "trigger"]
