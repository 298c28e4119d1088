"""install/manifest.py: the manifest is data, not authority: anything but the tool's own
files is refused."""

from __future__ import annotations

import json

import pytest

from tracardi_systemd.install.manifest import ManifestError, load_manifest


@pytest.mark.parametrize(("field", "value"), [
    ("files", {"/etc/passwd": "0" * 64}),
    ("files", {"../../../etc/passwd": "0" * 64}),
    ("files", {"tracardi-x.service/../../passwd": "0" * 64}),
    ("files", {"sshd.service": "0" * 64}),
    ("files", ["tracardi-x.service"]),
    ("files", {"tracardi-x.service": "not-a-hash"}),
    ("unit_dir", "etc/systemd/system"),
    ("unit_dir", "/etc/systemd/../../root"),
    ("env_file", "/../x"),
    ("env_file", "relative/.env"),
    ("units", ["ssh.service"]),
    ("surprise", 1),
])
def test_a_manifest_naming_anything_but_the_tools_own_files_is_refused(installed, field, value):
    root, _ = installed
    path = root / "var/lib/tracardi-systemd/manifest.json"
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="cannot be used"):
        load_manifest(root)
