"""The suite: params validation, the CLI, notebook runs, sweeps, claims and the report."""
