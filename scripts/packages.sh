# Sourced by scripts/test and scripts/demo: the Debian packages the end-to-end sandbox needs
# (tests/e2e/sandbox.py boots a real systemd and dockerd), and how to install what is missing.
SANDBOX_PACKAGES="systemd docker.io busybox-static redis-server util-linux iproute2"
# What the VM tier needs (tests/e2e/guest.py, scripts/vm-image): qemu with its software
# emulation, qemu-img, ssh, mkfs.ext4 -d, and the tools that pack the initramfs.
VM_PACKAGES="qemu-system-x86 qemu-utils openssh-client e2fsprogs cpio xz-utils zstd"

# install_missing PACKAGE...: as root, apt-get install those not installed; else nothing.
install_missing() {
    [ "$(id -u)" = 0 ] || return 0
    local missing
    missing=$(for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    [ -n "$missing" ] || return 0
    echo "installing Debian packages:" $missing
    apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# Debian's Prometheus and node exporter: promtool for the alert rules' tests, both daemons
# for the monitoring e2e test, which starts them inside the sandbox only (loopback). They
# are installed without being started, and left disabled, so the machine itself serves no
# port and the sandboxes of the other tests do not boot them either.
MONITORING_PACKAGES="prometheus prometheus-node-exporter"
MONITORING_UNITS="prometheus.service prometheus-node-exporter.service"

install_stopped() {
    [ "$(id -u)" = 0 ] || return 0
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && created=1
    fi
    local status=0
    install_missing "$@" || status=$?
    [ -z "$created" ] || rm -f $policy
    if command -v systemctl >/dev/null; then
        systemctl disable --now $MONITORING_UNITS >/dev/null 2>&1 || true
    fi
    return $status
}
