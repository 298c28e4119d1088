#!/usr/bin/env bash
# Build the root filesystem of the real update-worker image as a tar file:
#   build-rootfs.sh OUTPUT.tar PYTHON
# Debian 12 (debootstrap minbase + python3-venv) from Debian's archive, a venv at
# /opt/venv with requirements.txt from PyPI, the app under /app. PYTHON (one with pip,
# on this machine) downloads the wheels, so that pip runs with the machine's own
# settings (certificates); the pip inside the root filesystem installs them offline.
# Runs as root; everything it makes lives in a temporary folder beside OUTPUT.tar.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
python=$2
suite=bookworm
mirror=http://deb.debian.org/debian

work=$(mktemp -d "$(dirname "$out")/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

debootstrap --variant=minbase --include=python3-venv "$suite" "$root" "$mirror" \
    > "$work/debootstrap.log" || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

mkdir -p "$root/tmp/build"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$here/requirements.txt" -d "$root/tmp/build/wheels"
cp "$here/requirements.txt" "$root/tmp/build/"

# In a mount namespace of its own, so /proc inside goes away with it whatever happens.
inside() {
    unshare --mount --propagation private sh -c \
        'mount -t proc proc "$0/proc" && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
         HOME=/root LANG=C.UTF-8 chroot "$0" "$@"' "$root" "$@"
}
inside python3 -m venv /opt/venv
inside /opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
    --no-index --no-deps --only-binary=:all: --require-hashes \
    --find-links /tmp/build/wheels -r /tmp/build/requirements.txt
inside /opt/venv/bin/pip check >/dev/null

mkdir -p "$root/app"
cp -r "$here/tracardi" "$root/app/"
find "$root/app" -name __pycache__ -prune -exec rm -rf {} +
chmod -R a+rX,go-w "$root/app"
inside /opt/venv/bin/python -m compileall -q /app

# What a container does not need: package caches and lists, docs, the build's files.
rm -rf "$root"/tmp/build "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale "$root"/var/log/*
: > "$root/etc/resolv.conf"

tar --numeric-owner --sort=name -C "$root" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$out"
