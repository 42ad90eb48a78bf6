"""The 409 for an action the plan's status does not allow, with a code per status."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError


def state_error(plan: dict[str, Any], action: str) -> ApiError:
    status = plan["status"]
    code = {
        "created": "plan_not_prepared",
        "ready": "plan_not_started",
        "in_progress": "plan_in_progress",
        "completed": "plan_completed",
    }[status]
    return ApiError(
        409,
        code,
        f"cannot {action} plan {plan['plan_id']}: it is {status}",
        {"plan_id": plan["plan_id"], "status": status, "action": action},
    )
