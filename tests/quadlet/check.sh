#!/bin/sh
# Run inside a chroot of a Debian root with podman: Quadlet's generator on the files in
# /etc/containers/systemd (bound there by the caller), then systemd-analyze verify on what
# it generated, with the tool's own .timer and .target files beside it.
set -e
out=/run/quadlet-check
mkdir -p $out
/usr/lib/systemd/system-generators/podman-system-generator $out $out $out
cp /etc/containers/systemd/*.target /etc/containers/systemd/*.timer $out/ 2>/dev/null || true
echo "generated: $(cd $out && ls *.service | tr '\n' ' ')"
cd $out
SYSTEMD_LOG_LEVEL=warning SYSTEMD_UNIT_PATH=$out: systemd-analyze verify --man=no $out/*.service $out/*.target
