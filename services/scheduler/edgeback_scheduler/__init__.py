"""The scheduler service: computes due runs of saved jobs and publishes ``StartRun``."""
