# Sourced by the other scripts: make .venv with the project installed (editable).
# Usage: . scripts/venv.sh [EXTRAS]   e.g. ". scripts/venv.sh test"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras=${1:-}
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "tracardi-systemd needs Python 3.11 or newer (found $(python3 --version))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            python3 -m venv .venv
        else
            echo "python3 cannot create a venv: install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
.venv/bin/pip install --quiet --disable-pip-version-check -e "$spec"
