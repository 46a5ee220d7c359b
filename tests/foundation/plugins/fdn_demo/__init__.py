"""A task package for foundation tests: every plug-in module of the convention."""
