"""The journal catalog (what `journalctl -x` shows) stays in step with the MESSAGE_IDs the
agent and upgrade write, is in systemd's format as journalctl itself reads it, and is put
in place by install when no package did."""

import re
import subprocess
from pathlib import Path

import pytest

from tracardi_systemd.agent.journal_ids import EntryKind
from tracardi_systemd.install import journal_catalog
from tracardi_systemd.install.journal_catalog import (
    LOCAL,
    PACKAGED,
    SOURCE,
    install_catalog,
    remove_catalog,
)
from tracardi_systemd.upgrade.run import UpgradeEvent

IDS = {e.value for e in EntryKind} | {e.value for e in UpgradeEvent}


def entries(text: str) -> dict[str, str]:
    """{MESSAGE_ID: its headers and text}, as systemd's catalog format splits them."""
    parts = re.split(r"(?m)^-- ([0-9a-f]{32})$", text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_message_id_has_an_entry_and_no_entry_is_stale():
    found = entries(SOURCE.read_text())
    assert set(found) == IDS
    assert len(re.findall(r"(?m)^-- ", SOURCE.read_text())) == len(IDS)  # none twice


@pytest.mark.parametrize("message_id", sorted(IDS))
def test_each_entry_says_what_happened_why_and_what_to_do(message_id):
    entry = entries(SOURCE.read_text())[message_id]
    head, _, body = entry.strip("\n").partition("\n\n")
    assert re.match(r"Subject: \S", head) and "Defined-By: tracardi-systemd" in head
    for part in ("What happened:", "Why:", "What to do:"):
        assert part in body, f"{message_id} lacks {part!r}"


def test_journalctl_reads_the_catalog_with_every_id(tmp_path):
    (tmp_path / PACKAGED).parent.mkdir(parents=True)
    (tmp_path / PACKAGED).write_bytes(SOURCE.read_bytes())
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True,
                   timeout=60)
    listed = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    assert {line.split()[0] for line in listed.splitlines()} == IDS
    assert all(" tracardi-systemd: " in line for line in listed.splitlines())


def test_install_writes_the_catalog_once_where_no_package_did(tmp_path):
    line = install_catalog(tmp_path)
    assert line == f"wrote {tmp_path / LOCAL} (journalctl -x explains the agent's entries)"
    assert (tmp_path / LOCAL).read_bytes() == SOURCE.read_bytes()
    assert (tmp_path / "var/lib/systemd/catalog/database").is_file()  # the index, rebuilt
    assert install_catalog(tmp_path) is None  # unchanged: nothing to do

    assert remove_catalog(tmp_path) == f"removed {tmp_path / LOCAL}"
    assert not (tmp_path / LOCAL).exists()
    assert not (tmp_path / "var/lib/systemd/catalog/database").exists()  # as it was
    assert remove_catalog(tmp_path) is None


def test_the_package_s_catalog_replaces_install_s_copy(tmp_path):
    install_catalog(tmp_path)
    (tmp_path / PACKAGED).parent.mkdir(parents=True)
    (tmp_path / PACKAGED).write_bytes(SOURCE.read_bytes())
    assert "the package's" in (install_catalog(tmp_path) or "")
    assert not (tmp_path / LOCAL).exists()
    assert install_catalog(tmp_path) is None


def test_a_catalog_that_cannot_be_written_is_an_install_error(tmp_path, monkeypatch):
    (tmp_path / "usr").write_text("not a directory")
    with pytest.raises(journal_catalog.CatalogError, match=str(tmp_path / LOCAL)):
        install_catalog(tmp_path)
    assert not Path(tmp_path / "var").exists()
