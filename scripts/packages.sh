# Sourced by scripts/test and scripts/demo: the Debian packages the end-to-end sandbox needs
# (tests/e2e/sandbox.py boots a real systemd and dockerd), and how to install what is missing.
SANDBOX_PACKAGES="systemd docker.io busybox-static redis-server util-linux iproute2"

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
