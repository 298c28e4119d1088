"""Floor 3, what Tracardi is: the catalog of releases and workers, the env file as both
readers parse it, and the validation of settings against what each worker reads."""
