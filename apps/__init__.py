"""User-facing commands; thin wiring of the core pieces."""
