"""Test kit for tasks written with offload (filled in by the framework)."""
