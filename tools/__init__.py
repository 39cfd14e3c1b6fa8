"""Developer tooling: the local stack, the demo and helpers (not deployed)."""
