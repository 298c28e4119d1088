"""The journal's message catalog of the agent's and upgrade's entries (what `journalctl -x`
explains). The deb and rpm put it in /usr/lib/systemd/catalog; without the package,
`install` puts it in /usr/local/lib/systemd/catalog (journalctl reads no /etc), and removes
that copy once the package's is there, since it would hide the package's (same name)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tracardi_systemd.host.commands import CommandError, run
from tracardi_systemd.install.files import write_atomic
from tracardi_systemd.install.transaction import InstallError

CATALOG = "tracardi-systemd.catalog"
SOURCE = Path(__file__).resolve().parents[1] / "data" / CATALOG
PACKAGED = Path("usr/lib/systemd/catalog") / CATALOG
LOCAL = Path("usr/local/lib/systemd/catalog") / CATALOG
INDEX = Path("var/lib/systemd/catalog/database")  # what journalctl --update-catalog writes


class CatalogError(InstallError):
    pass


def install_catalog(root: Path) -> str | None:
    """Put the catalog in place unless it is; what was done, as a line to show."""
    local = root / LOCAL
    try:
        if (root / PACKAGED).exists():
            if not local.exists():
                return None
            local.unlink()
            line = f"removed {local}: the package's {PACKAGED.name} replaces it"
        else:
            data = SOURCE.read_bytes()
            if local.exists() and local.read_bytes() == data:
                return None
            local.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(local, data)
            line = f"wrote {local} (journalctl -x explains the agent's entries)"
    except OSError as exc:
        raise CatalogError(f"{local}: {exc.strerror or exc}") from None
    update_catalog(root)
    return line


def remove_catalog(root: Path) -> str | None:
    local = root / LOCAL
    try:
        local.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CatalogError(f"{local}: {exc.strerror or exc}") from None
    for directory in (local.parent, local.parent.parent):  # what install_catalog made
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty
    if any(any(d.glob("*.catalog")) for d in (local.parent, root / PACKAGED.parent)):
        update_catalog(root)
    else:  # journalctl keeps an index of nothing: an offline root is left as it was
        (root / INDEX).unlink(missing_ok=True)
    return f"removed {local}"


def update_catalog(root: Path) -> None:
    """Rebuild journald's catalog index, of the live host or of an offline root."""
    try:
        run(["journalctl", f"--root={root}", "--update-catalog"], timeout=60)
    except CommandError as exc:
        raise CatalogError(f"journalctl --update-catalog failed: {exc}") from None
