"""The CLI against an offline root, as the install and uninstall tests drive it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tracardi_systemd.cli.main import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}
