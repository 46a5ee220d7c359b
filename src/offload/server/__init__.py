"""The offload HTTP service (FastAPI): ``create_api(settings, celery_app)``."""

from offload.server.app import create_api

__all__ = ["create_api"]
