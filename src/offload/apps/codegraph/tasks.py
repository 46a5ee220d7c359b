"""codegraph's Celery tasks (filled in once the framework's decorators land)."""
