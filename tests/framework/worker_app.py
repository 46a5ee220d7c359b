"""The app of framework worker subprocesses: settings from OFFLOAD_* (set by the test)."""

import os

from offload import create_worker_app, load_settings

app = create_worker_app(settings=load_settings())

_restore = os.environ.get("FW_UNACKED_RESTORE_INTERVAL")
if _restore:
    # Let a new worker pick up what a killed one left unacknowledged soon after the
    # visibility timeout, instead of kombu's default sweep period of ~100 s.
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "unacked_restore_interval": float(_restore),
        "unacked_restore_throttle": 1,
    }
