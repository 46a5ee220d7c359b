"""Plain Celery shared tasks (the framework's decorators are tested elsewhere)."""

import time

from celery import shared_task
from celery.schedules import schedule


@shared_task(name="fdn.add")
def add(a, b):
    return a + b


@shared_task(name="fdn.where", queue="high_priority", bind=True)
def where_high(self):
    return self.request.delivery_info.get("routing_key")


@shared_task(name="fdn.where_default", bind=True)
def where_default(self):
    return self.request.delivery_info.get("routing_key")


@shared_task(name="fdn.where_low", queue="low_priority", bind=True)
def where_low(self):
    return self.request.delivery_info.get("routing_key")


@shared_task(name="fdn.slow")
def slow(seconds):
    time.sleep(seconds)
    return f"slept {seconds}"


@shared_task(name="fdn.progress", bind=True)
def progress(self, steps):
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"percent": 100.0 * step / steps,
                                                  "stage": f"step {step}"})
        time.sleep(0.2)
    return steps


@shared_task(name="fdn.fail")
def fail(message):
    raise ValueError(message)


@shared_task(name="fdn.tick", offload_schedule=schedule(3600), queue="low_priority")
def tick():
    return "tick"
