"""Floor 8, health-gated upgrades: the gate that judges one restarted worker and the run
that moves every worker to another image tag, or back."""
