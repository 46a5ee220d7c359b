"""pytest plugin of offload: fixtures for testing tasks (see offload.testing)."""
