"""Run Tracardi's background workers as supervised systemd services."""

__version__ = "0.1.0"
