"""PLAN202401 "2024년 한국어능력시험" as the seeds describe it, with a five-question package.

Dates are moved to today so that the demo reads as a live exam; ids, names and codes are the
seeds' own.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta
from typing import Any

from ..base.clock import iso, utc_now

PLAN_ID = "PLAN202401"
EXAM_CODE = "EXAM202401"

_NAMES = [
    "홍길동",
    "김영희",
    "이철수",
    "박민수",
    "최지우",
    "정하늘",
    "강바다",
    "윤서연",
    "임도윤",
    "한지민",
]


def sample_plan(now: datetime | None = None, candidates: int = 10) -> dict[str, Any]:
    start = (now or utc_now()).replace(minute=0, second=0, microsecond=0)
    people = []
    for i in range(candidates):
        group = "GROUP01" if i % 2 == 0 else "GROUP02"
        people.append(
            {
                "candidate_id": f"CAND2023{i + 1:02d}",
                "candidate_name": _NAMES[i % len(_NAMES)] + ("" if i < len(_NAMES) else str(i)),
                "candidate_auth_code": f"AUTH{1234 + i}",
                "grade_level": "고3",
                "email_address": f"cand{i + 1:02d}@example.com" if i else "hong@example.com",
                "additional_info": {"school": "서울고", "major": "문과"},
                "group_id": group,
                "access_key": f"KEY-CAND2023{i + 1:02d}",
            }
        )
    return {
        "exam_plan": {
            "plan_id": PLAN_ID,
            "exam_name": "2024년 한국어능력시험",
            "start_datetime": iso(start),
            "end_datetime": iso(start + timedelta(days=1)),
            "login_method": "웹 로그인",
            "conduct_type": "동시시험",
            "requires_supervisor": True,
            "enables_cheating_detection": False,
            "requires_camera": True,
            "camera_capture_interval": 10,
            "enables_ai_monitoring": True,
            "enables_gaze_tracking": False,
            "allows_mobile_camera": True,
            "shuffle_questions": True,
            "shuffle_answers": True,
        },
        "stages": [
            {
                "stage_id": "STEP01",
                "stage_name": "시스템 점검",
                "time_limit_seconds": 300,
                "auto_move_enabled": True,
            },
            {
                "stage_id": "STEP02",
                "stage_name": "본 시험",
                "time_limit_seconds": 7200,
                "auto_move_enabled": True,
                "exam_code": EXAM_CODE,
                "allocated_exam_time": 7200,
            },
        ],
        "groups": [
            {
                "group_id": "GROUP01",
                "group_name": "서울 1반",
                "group_description": "서울 지역 오전 시험",
                "start_datetime": iso(start),
                "end_datetime": iso(start + timedelta(hours=3)),
            },
            {
                "group_id": "GROUP02",
                "group_name": "서울 2반",
                "group_description": "서울 지역 오전 시험",
                "start_datetime": iso(start),
                "end_datetime": iso(start + timedelta(hours=3)),
            },
        ],
        "candidates": people,
        "supervisors": [
            {
                "supervisor_id": "SUP202301",
                "supervisor_name": "김철수",
                "group_id": "GROUP01",
                "supervisor_auth_code": "SUPAUTH01",
            },
            {
                "supervisor_id": "SUP202302",
                "supervisor_name": "이영자",
                "group_id": "GROUP02",
                "supervisor_auth_code": "SUPAUTH02",
            },
        ],
    }


def sample_manifest() -> dict[str, Any]:
    choices = [
        {"id": str(i), "text": t}
        for i, t in enumerate(
            ["학교에 갑니다", "학교에 가요", "학교에 갔어요", "학교에 갈 거예요"], 1
        )
    ]
    return {
        "format": "examsync-package/1",
        "title": "2024년 한국어능력시험",
        "planId": PLAN_ID,
        "exams": [
            {
                "examCode": EXAM_CODE,
                "title": "한국어능력시험 읽기",
                "questions": [
                    {
                        "quizCode": "Q001",
                        "type": "choice",
                        "prompt": "내일 무엇을 할 거예요? 알맞은 것을 고르십시오.",
                        "choices": choices,
                    },
                    {
                        "quizCode": "Q002",
                        "type": "choice",
                        "prompt": "'사과'는 무엇입니까?",
                        "choices": [
                            {"id": "1", "text": "과일"},
                            {"id": "2", "text": "채소"},
                            {"id": "3", "text": "음료"},
                            {"id": "4", "text": "과자"},
                        ],
                    },
                    {
                        "quizCode": "Q003",
                        "type": "number",
                        "prompt": "하루는 몇 시간입니까? 숫자로 쓰십시오.",
                        "maxLength": 4,
                    },
                    {
                        "quizCode": "Q004",
                        "type": "text",
                        "prompt": "주말에 보통 무엇을 합니까? 두세 문장으로 쓰십시오.",
                        "maxLength": 1000,
                    },
                    {
                        "quizCode": "Q005",
                        "type": "text",
                        "prompt": "여러분의 고향을 소개하는 글을 쓰십시오.",
                        "maxLength": 5000,
                    },
                ],
            }
        ],
    }


def sample_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "manifest.json", json.dumps(sample_manifest(), ensure_ascii=False, indent=2)
        )
        archive.writestr("README.txt", "examsync sample package for PLAN202401\n")
    return buffer.getvalue()
