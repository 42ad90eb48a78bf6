"""Known-answer receipts, signed by the reference server's signer, for both verifiers.

``python tests/sdk_cpython/receipt_vectors.py`` writes tests/pyodide/suite/receipt_vectors.json.
Ed25519 signatures are deterministic, so the file is the same on every run; a CPython test
checks that, and that ``cryptography`` gives each case its expected verdict, and a test in
Pyodide checks that WebCrypto gives the same verdicts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from examsync.messages import Receipt, ReceiptPayload
from examsync.protocol import b64url_encode, value_sha256
from examsync_server.answers.signing import ReceiptSigner

PATH = Path(__file__).parents[1] / "pyodide" / "suite" / "receipt_vectors.json"
KEY_ID = "kvectors"


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _payload(quiz_code: str, value: str, version: int) -> ReceiptPayload:
    return ReceiptPayload(
        plan_id="PLAN202401",
        candidate_id="CAND202301",
        exam_code="EXAM202401",
        quiz_code=quiz_code,
        version=version,
        value_sha256=value_sha256(value),
        server_time="2024-01-01T09:00:02.345Z",
    )


def build() -> dict[str, Any]:
    signer = ReceiptSigner({KEY_ID: _key("examsync vectors")}, KEY_ID, Path("unused"))
    stranger = ReceiptSigner({KEY_ID: _key("another server")}, KEY_ID, Path("unused"))
    genuine = signer.sign(_payload("Q001", "정답 ①", 2))
    flipped = bytes([genuine.signature[0] ^ 1]) + genuine.signature[1:]
    cases: list[tuple[str, Receipt, str]] = [
        ("genuine", genuine, "valid"),
        ("genuine, long value", signer.sign(_payload("Q002", "x" * 5000, 7)), "valid"),
        (
            "payload changed after signing",
            replace(genuine, payload=_payload("Q001", "b", 2)),
            "invalid",
        ),
        (
            "version changed after signing",
            replace(genuine, payload=_payload("Q001", "정답 ①", 3)),
            "invalid",
        ),
        ("one signature bit flipped", replace(genuine, signature=flipped), "invalid"),
        (
            "signed by another key under our key id",
            stranger.sign(_payload("Q001", "정답 ①", 2)),
            "invalid",
        ),
        ("unknown key id", replace(genuine, key_id="kunknown"), "unknown_key"),
    ]
    return {
        "keys": {KEY_ID: b64url_encode(_raw_public(signer.keys[KEY_ID]))},
        "cases": [
            {"name": name, "quizCode": r.payload.quiz_code, "receipt": r.to_wire(), "expected": e}
            for name, r, e in cases
        ],
    }


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {PATH}")
