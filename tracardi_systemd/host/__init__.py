"""Floor 2, the host: how this tool talks to the machine (systemctl and docker commands,
Docker's Engine API, cgroup files, journald). Knows nothing of Tracardi."""
