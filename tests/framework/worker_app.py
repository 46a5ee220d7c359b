"""The app of framework worker subprocesses: settings from OFFLOAD_* (set by the test)."""

from offload import create_worker_app, load_settings

app = create_worker_app(settings=load_settings())
