"""What a save may name: a plan's exam codes and, per question, its longest allowed value;
and what captures the plan takes (its camera flags and capture interval, seed 003).

Read from SQLite and the exam package once per plan and kept in memory: a plan's stages and
package are frozen once it has started, and saves are only taken from started plans.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..errors import ApiError
from ..store.files import FileStore
from ..store.plans import Plans
from ..store.sqlite import Database
from .packages import read_manifest
from .plan_status import locked


@dataclass(frozen=True, slots=True)
class PlanCatalog:
    plan_id: str
    conduct_type: str
    # exam_code -> quiz_code -> maxLength
    exams: dict[str, dict[str, int]]
    requires_camera: bool = False
    allows_mobile_camera: bool = False
    camera_capture_interval: int | None = None


class Catalog:
    def __init__(self, db: Database, files: FileStore) -> None:
        self.plans = Plans(db)
        self.files = files
        self._plans: dict[str, PlanCatalog] = {}

    async def get(self, plan_id: str) -> PlanCatalog:
        found = self._plans.get(plan_id)
        if found is not None:
            return found
        plan = await self.plans.find(plan_id)
        if plan is None:
            raise ApiError(404, "plan_not_found", "no such plan", {"plan_id": plan_id})
        limits: dict[str, dict[str, int]] = {
            code: {} for code in await self.plans.exam_codes(plan_id)
        }
        if plan["package_sha256"]:
            path = self.files.package_path(plan_id, plan["package_sha256"])
            manifest = await asyncio.to_thread(read_manifest, path.read_bytes())
            for exam in manifest["exams"]:
                if exam["examCode"] in limits:
                    limits[exam["examCode"]] = {
                        q["quizCode"]: int(q.get("maxLength", 10_000)) for q in exam["questions"]
                    }
        catalog = PlanCatalog(
            plan_id,
            plan["conduct_type"],
            limits,
            bool(plan["requires_camera"]),
            bool(plan["allows_mobile_camera"]),
            plan["camera_capture_interval"],
        )
        if locked(plan["status"]):
            self._plans[plan_id] = catalog  # frozen from here on
        return catalog
