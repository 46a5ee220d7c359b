from fastapi import APIRouter, Depends

from offload.integrations.fastapi import current_tenant, tenant_task_id

router = APIRouter(prefix="/fdn", tags=["fdn"])


@router.post("/{task}")
def submit(task: str, body: dict, tenant: str = Depends(current_tenant)) -> dict:
    from fdn_demo import tasks

    func = {"add": tasks.add, "slow": tasks.slow, "progress": tasks.progress,
            "fail": tasks.fail}[task]
    result = func.apply_async(kwargs=body, task_id=tenant_task_id(tenant))
    return {"task_id": result.id, "tenant": tenant}
