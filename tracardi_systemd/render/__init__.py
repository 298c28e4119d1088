"""Floor 4, unit files: a declarative description turned into systemd units (and Quadlet
files) by pure functions; every value escaped by a named filter. Writes nothing."""
