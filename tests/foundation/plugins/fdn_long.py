"""A task with a long time limit, registered only on the apps that list this module: the
framework's decorator, unlike a plain ``shared_task``, does not leak into every app created
afterwards."""

from offload import TaskContext, simple_task


@simple_task(name="fdn.very_long", time_limit=20000, soft_time_limit=19000)
def very_long(ctx: TaskContext) -> None:
    return None
