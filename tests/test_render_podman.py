"""Quadlet .container files for --runtime podman: golden files, escaping, and (where a
Debian 13 root with podman is cached) Quadlet's generator and systemd-analyze verify.

Regenerate the golden files after an intended change with
UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_podman.py
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tracardi_systemd.render.escape import UnsafeValue
from tracardi_systemd.render.units import RenderSettings, fully_qualified, render
from tracardi_systemd.spec.catalog import select_workers

GOLDEN = Path(__file__).parent / "golden" / "podman"
CHECK = Path(__file__).parent / "quadlet" / "check.sh"
KEYS = ("ELASTIC_HOST", "REDIS_HOST", "API_LICENSE")
CASES = {"0.8.1": {"scheduler": 2}, "1.2.0": {"background-function": 2}}


def settings(version: str, **more) -> RenderSettings:
    return RenderSettings(version=version, workers=select_workers(version, ()), env_keys=KEYS,
                          runtime="podman", replicas=CASES[version], **more)


@pytest.mark.parametrize("version", sorted(CASES))
def test_podman_files_match_the_golden_files(version):
    files = render(settings(version))
    folder = GOLDEN / version
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    assert sorted(files) == sorted(p.name for p in folder.iterdir())
    for name, text in files.items():
        assert text == (folder / name).read_text(), name


def test_a_podman_install_has_its_agent_on_podman_and_no_docker():
    files = render(settings("0.8.1"))
    agent = files["tracardi-agent.service"]
    exec_start = next(line for line in agent.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(" --runtime podman")
    assert "Wants=podman.socket" in agent and "docker.service" not in agent
    assert not any("docker run" in t or "docker.service" in t for t in files.values())
    assert "tracardi-update.container" in files
    assert "tracardi-scheduler@.container" in files


@pytest.mark.parametrize("version", sorted(CASES))
def test_every_image_is_fully_qualified_for_podman(version):
    named = {line.removeprefix("Image=") for text in render(settings(version)).values()
             for line in text.splitlines() if line.startswith("Image=")}
    assert named == {settings(version).image_of(w) for w in settings(version).workers}
    assert all(image.startswith("docker.io/tracardi/") for image in named), named


@pytest.mark.parametrize(("image", "qualified"), [
    ("tracardi/update-worker:1.2.x", "docker.io/tracardi/update-worker:1.2.x"),
    ("redis:7", "docker.io/library/redis:7"),
    ("registry.example.com/tracardi/apm:1.2.x", "registry.example.com/tracardi/apm:1.2.x"),
    ("localhost:5000/apm:1", "localhost:5000/apm:1"),
    ("localhost/apm:1", "localhost/apm:1"),
])
def test_short_names_get_docker_hub_as_docker_reads_them(image, qualified):
    assert fully_qualified(image) == qualified


def test_the_license_is_a_secret_never_a_value():
    files = render(settings("1.2.0"))
    text = files["tracardi-background-logger.container"]
    assert "Secret=tracardi-license,type=env,target=LICENSE" in text
    assert "--env=LICENSE" not in text and "API_LICENSE" not in text


def test_template_instances_are_wanted_by_the_target_not_installed():
    files = render(settings("0.8.1"))
    assert "[Install]" not in files["tracardi-scheduler@.container"]
    assert ("Wants=tracardi-scheduler@1.service tracardi-scheduler@2.service"
            in files["tracardi.target"])
    assert "WantedBy=tracardi.target" in files["tracardi-update.container"]


def test_on_failure_reaches_every_container_file_and_the_agent():
    """Quadlet passes [Unit] on as it is: the generated services get OnFailure= too."""
    files = render(settings("0.8.1", on_failure="tracardi-notify@.service"))
    containers = [name for name in files if name.endswith(".container")]
    assert containers
    for name in containers:
        unit = files[name].split("[Container]")[0]
        assert "\nOnFailure=tracardi-notify@%n.service\n" in unit, name
    agent = files["tracardi-agent.service"]
    assert "\nOnFailure=tracardi-notify@%n.service\n" in agent
    assert "--on-failure tracardi-notify@.service --runtime podman\n" in agent


def test_values_are_escaped_for_systemd_after_quadlet():
    files = render(settings("0.8.1", worker_env={"X": 'a "b" %c $d'}))
    text = files["tracardi-update.container"]
    assert 'Environment="X=a \\"b\\" %%c $d"' in text  # systemd does not expand $ there
    assert "celery@$$HOSTNAME" in text  # Quadlet passes $ on into ExecStart=
    assert "PodmanArgs=--env=X" in text


def test_unsafe_values_are_refused():
    with pytest.raises(UnsafeValue):
        render(settings("0.8.1", worker_env={"X": "a\nb"}))
    with pytest.raises(UnsafeValue):
        render(RenderSettings(version="0.8.1", workers=select_workers("0.8.1", ()),
                              runtime="rkt"))


def _quadlet_root() -> str | None:
    found = sorted(glob.glob("/var/tmp/tracardi-roots/trixie-*/usr/lib/systemd/"
                             "system-generators/podman-system-generator"))
    return found[-1].split("/usr/lib/")[0] if found else None


@pytest.mark.skipif(os.geteuid() != 0 or not _quadlet_root() or not shutil.which("unshare"),
                    reason="needs root and a cached Debian 13 root with podman "
                    "(scripts/debian-root trixie)")
@pytest.mark.parametrize("version", sorted(CASES))
def test_quadlet_generates_services_systemd_accepts(version, tmp_path):
    root = _quadlet_root()
    for name, text in render(settings(version)).items():
        (tmp_path / name).write_text(text)
    script = (f"mount -t tmpfs tmpfs {root}/run && "
              f"mount --bind {tmp_path} {root}/etc/containers/systemd && "
              f"mount --bind {CHECK.parent} {root}/mnt && "
              f"mount -t proc proc {root}/proc && chroot {root} /mnt/check.sh")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    generated = done.stdout.split("generated:")[1].split()
    expected = {n.replace(".container", ".service") for n in render(settings(version))
                if n.endswith(".container")}
    assert set(generated) == expected
    problems = [line for line in done.stderr.splitlines() + done.stdout.splitlines()
                if "quadlet-generator" not in line and not line.startswith("generated:")]
    assert problems == []


# --- install --runtime podman on an offline root ------------------------------------------

def test_install_writes_container_files_to_their_own_folder_and_uninstall_removes_them(
        write_env, tmp_path):
    from click.testing import CliRunner
    from samples import CLEAN_ENV

    from tracardi_systemd.cli.main import main
    from tracardi_systemd.install.manifest import load_manifest

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    root = tmp_path / "root"
    env = write_env(CLEAN_ENV)
    done = invoke("install", "--root", str(root), "--env-file", str(env),
                  "--runtime", "podman", "--replicas", "scheduler=2")
    assert done.exit_code == 0, done.output
    quadlet = root / "etc/containers/systemd"
    assert (quadlet / "tracardi-update.container").is_file()
    assert (quadlet / "tracardi-scheduler@.container").is_file()
    assert (root / "etc/systemd/system/tracardi.target").is_file()
    assert not (root / "etc/systemd/system/tracardi-update.container").exists()
    manifest = load_manifest(root)
    assert manifest is not None and manifest.quadlet_dir == "/etc/containers/systemd"
    assert manifest.options["runtime"] == "podman"
    assert "podman secret create --replace" in done.output  # offline: no secret store
    again = invoke("install", "--root", str(root))  # the runtime of the last install
    assert again.exit_code == 0, again.output
    assert not any(line.startswith(("create ", "update ", "remove "))
                   for line in again.output.splitlines()), again.output
    gone = invoke("uninstall", "--root", str(root), "--purge")
    assert gone.exit_code == 0, gone.output
    assert not list(quadlet.iterdir()) and load_manifest(root) is None


def test_a_manifest_with_container_files_needs_their_folder():
    from tracardi_systemd.install.manifest import Manifest

    with pytest.raises(ValueError, match="quadlet_dir"):
        Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                 tracardi_version="0.8.1", units=[],
                 files={"tracardi-update.container": "0" * 64}).check()
    with pytest.raises(ValueError, match="quadlet_dir"):
        Manifest(unit_dir="/etc/systemd/system", env_file="/etc/tracardi/.env-docker",
                 tracardi_version="0.8.1", units=[], quadlet_dir="/etc/../x").check()


class FakePodman:
    """`podman secret rm` of a host whose secret store holds `secrets`."""

    program = "/usr/bin/podman"

    def __init__(self, *secrets: str):
        self.secrets = set(secrets)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, **_: object) -> str:
        from tracardi_systemd.host.commands import CommandError

        self.calls.append(args)
        if args[:2] == ("secret", "rm"):
            if args[2] not in self.secrets:
                raise CommandError(f'podman secret rm failed: Error: no secret with name or id '
                                   f'"{args[2]}": no such secret')
            self.secrets.remove(args[2])
        return ""


@pytest.mark.parametrize(("purge", "held", "left"), [
    (True, ("tracardi-license",), set()),
    (True, (), set()),  # already gone: nothing to say, no failure
    (False, ("tracardi-license",), {"tracardi-license"}),
])
def test_uninstall_purge_removes_the_license_secret_on_a_podman_host(
        write_env, tmp_path, purge, held, left):
    from click.testing import CliRunner
    from samples import CLEAN_ENV
    from test_version_move import RecordingSystemctl

    from tracardi_systemd.cli.main import main
    from tracardi_systemd.install.uninstall import Uninstaller

    root = tmp_path / "root"
    done = CliRunner().invoke(main, ["install", "--root", str(root), "--env-file",
                                     str(write_env(CLEAN_ENV)), "--runtime", "podman"])
    assert done.exit_code == 0, done.output
    podman, said = FakePodman(*held), []
    uninstaller = Uninstaller(root, RecordingSystemctl(), podman)  # type: ignore[arg-type]
    uninstaller.live = True
    uninstaller.run(purge=purge, force=False, say=said.append)
    assert podman.secrets == left
    assert ("removed the Podman secret tracardi-license" in said) == (purge and bool(held))
    assert [c for c in podman.calls if c[0] != "secret"] == []
