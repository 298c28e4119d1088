"""The shipped alert rules (monitoring/tracardi.rules.yml) judged by Prometheus' own
promtool: valid, and each alert fires within its `for:` on series that mimic its failure
and clears after the repair (tests/monitoring/tracardi.rules.test.yml). promtool comes with
Debian's prometheus package, which scripts/test installs."""

import shutil
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
RULES = CHECKOUT / "monitoring" / "tracardi.rules.yml"
RULE_TESTS = CHECKOUT / "tests" / "monitoring" / "tracardi.rules.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    program = shutil.which("promtool")
    assert program, "promtool is missing: scripts/test installs Debian's prometheus package"
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_each_alert_fires_on_its_failure_and_clears_after_the_repair():
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_for_and_a_runbook_naming_journalctl():
    import yaml  # ansible-core's dependency, in the test extra

    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "TracardiWorkerDown", "TracardiWorkerNotLive", "TracardiCrashLoopGivenUp",
        "TracardiDependencyUnreachable", "TracardiAgentStale", "TracardiWorkerMemoryNearLimit",
        "TracardiQueueStuck"}
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert "journalctl" in rule["annotations"]["runbook"], rule["alert"]
    tested = RULE_TESTS.read_text()
    for rule in rules:
        assert f"alertname: {rule['alert']}\n" in tested, f"{rule['alert']} is never tested"
