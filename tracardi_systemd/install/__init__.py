"""Floor 5, putting units on a host: the plan against the manifest, the locked transaction
that writes, enables and starts, and the trust checks of what root will run."""
