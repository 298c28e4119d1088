"""Floor 6, what runs: units, containers and memory read into one model, and `status`."""
