from fastapi import APIRouter, Depends

from offload.integrations.fastapi import current_tenant, get_celery_app, tenant_task_id

router = APIRouter(prefix="/fdn", tags=["fdn"])


@router.post("/{task}")
def submit(task: str, body: dict, tenant: str = Depends(current_tenant),
           celery=Depends(get_celery_app)) -> dict:
    # The app of this service, not the process-wide default (tests build several apps).
    func = celery.tasks[f"fdn.{task}"]
    result = func.apply_async(kwargs=body, task_id=tenant_task_id(tenant))
    return {"task_id": result.id, "tenant": tenant}
