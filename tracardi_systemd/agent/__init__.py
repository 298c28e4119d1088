"""Floor 7, the watchdog agent: the policy (explicit worker states and transitions), the
loop that observes and acts, the Docker event watch, and its journal entries."""
