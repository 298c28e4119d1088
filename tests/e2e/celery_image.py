"""The real update worker of Tracardi 0.8.1 (a Celery 5.2.6 app), as an image in a sandbox.

The recipe is the folder celery_app/: build-rootfs.sh (Debian 12 from debootstrap, a venv
with requirements.txt from PyPI), the pins, and the app (tracardi/worker/celery_worker.py).
Its root filesystem is built on this machine, outside any sandbox (a sandbox has no
network), once per recipe: the tar is cached under /var/tmp keyed by a hash of every file
of the recipe. Build it before booting the sandbox that imports it: the sandbox sees the
machine's files through an overlay, which is not meant to see files added after it booted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .sandbox import DOCKER, Sandbox
from .standin import TRACARDI_TAG

RECIPE = Path(__file__).resolve().parent / "celery_app"
CACHE_DIR = Path("/var/tmp/tracardi-e2e-cache")
IMAGE = "tracardi/update-worker"
PODMAN = "podman"
APP = "tracardi.worker.celery_worker"
# What Tracardi's Dockerfile runs (there as ENTRYPOINT; a CMD here, like the stand-ins).
WORKER_COMMAND = ["celery", "-A", APP, "worker", "-l", "info", "--uid=nobody", "--gid=nogroup"]
IMAGE_CHANGES = [
    f"CMD {json.dumps(WORKER_COMMAND)}",
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV PYTHONUNBUFFERED=1",
    "WORKDIR /app",
]


def recipe_files() -> list[Path]:
    return sorted(
        path
        for path in RECIPE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def recipe_hash() -> str:
    """sha256 over the recipe's file names, modes and contents."""
    digest = hashlib.sha256()
    for path in recipe_files():
        executable = path.stat().st_mode & 0o111 != 0
        digest.update(f"{path.relative_to(RECIPE)}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def rootfs_tar(cache_dir: Path = CACHE_DIR) -> tuple[Path, float | None]:
    """The cached root filesystem tar, built first if missing: (path, build seconds or None).

    Concurrent callers wait on a lock for the one that builds; the script writes a
    temporary file and renames it, so a reader never sees half a tar.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    tar = cache_dir / f"celery-{recipe_hash()}.tar"
    if tar.exists():
        return tar, None
    with open(cache_dir / f"{tar.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tar.exists():
            return tar, None
        started = time.monotonic()
        subprocess.run(
            [str(RECIPE / "build-rootfs.sh"), str(tar), sys.executable],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        return tar, time.monotonic() - started


def image_ref(engine: str = DOCKER, tag: str = TRACARDI_TAG) -> str:
    """The image's name in the engine's store: on Podman fully qualified, as a registry's
    pull names it (and as Quadlet's Image= of the update worker does)."""
    return f"{'docker.io/' if engine == PODMAN else ''}{IMAGE}:{tag}"


def import_image(sandbox: Sandbox, tar: Path, tag: str = TRACARDI_TAG,
                 engine: str = DOCKER) -> str:
    """`docker import` (or `podman import`) the tar inside the sandbox as the update
    worker's image at `tag` (image_ref)."""
    ref = image_ref(engine, tag)
    changes = " ".join(f"-c {shlex.quote(change)}" for change in IMAGE_CHANGES)
    sandbox.run(f"{engine} import {changes} {shlex.quote(str(tar))} {ref}", timeout=300)
    return ref


def build_celery_image(sandbox: Sandbox, tag: str = TRACARDI_TAG) -> str:
    """The real worker image in the sandbox's docker (the tar must predate the boot)."""
    tar, _ = rootfs_tar()
    return import_image(sandbox, tar, tag)
