"""Exam packages: upload checks (checksum, zip, manifest, limits) and the candidate download.

A refused upload stores nothing: no file in the file store, the plan row and Redis unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import sqlite3
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from pytest import Subtests
from quart.typing import TestClientProtocol as Client

from examsync_server.config import Settings
from examsync_server.demo.sample import PLAN_ID, sample_manifest, sample_package
from examsync_server.exam import packages

from .conftest import cases, error_of, load_plan, login, other_plan, package_headers, plan_with

State = Callable[[], dict[str, Any]]
URL = f"/api/v1/admin/plans/{PLAN_ID}/package"


# -- building zips -------------------------------------------------------------------------------


def make_zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names; we want them
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in members:
                archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def manifest_bytes(manifest: Any) -> bytes:
    return manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()


def package(
    manifest: Any = None,
    extra: Sequence[tuple[str, bytes]] = (),
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A package with `manifest` (a dict, or raw bytes) and extra members."""
    body = manifest_bytes(sample_manifest() if manifest is None else manifest)
    return make_zip([("manifest.json", body), *extra], compression)


def manifest_with(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    manifest = sample_manifest()
    change(manifest)
    return manifest


def question(manifest: dict[str, Any], index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = manifest["exams"][0]["questions"][index]
    return found


def member_data_offset(data: bytes, name: str) -> int:
    """Where the (compressed) bytes of one member start in the zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        header = archive.getinfo(name).header_offset
    name_length, extra_length = struct.unpack("<HH", data[header + 26 : header + 30])
    return header + 30 + name_length + extra_length


def patched_first_member(data: bytes, local: int, central: int, value: int) -> bytes:
    """Overwrite a 2-byte field of the first member in its local header and its central
    directory entry (the first entry of the directory)."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        header = archive.infolist()[0].header_offset
        directory: int = archive.start_dir  # type: ignore[attr-defined]
    assert data[directory : directory + 4] == b"PK\x01\x02"
    struct.pack_into("<H", out, header + local, value)
    struct.pack_into("<H", out, directory + central, value)
    return bytes(out)


def with_stored_byte_flipped() -> bytes:
    data = bytearray(package(extra=[("notes.txt", b"hello " * 50)], compression=0))
    data[member_data_offset(bytes(data), "notes.txt") + 3] ^= 0xFF  # CRC no longer matches
    return bytes(data)


def with_deflate_stream_broken() -> bytes:
    data = bytearray(package(extra=[("notes.txt", b"hello " * 50)]))
    data[member_data_offset(bytes(data), "notes.txt")] = 0xFF  # block type 3: invalid
    return bytes(data)


def with_manifest_flags(flags: int) -> bytes:
    return patched_first_member(package(), 6, 8, flags)


def with_manifest_method(method: int) -> bytes:
    return patched_first_member(package(), 8, 10, method)


# -- upload: refused -----------------------------------------------------------------------------


async def upload(
    client: Client, admin: dict[str, str], data: bytes, checksum: str | None = "auto"
) -> Any:
    headers = dict(admin)
    if checksum == "auto":
        headers["X-Content-SHA256"] = hashlib.sha256(data).hexdigest()
    elif checksum is not None:
        headers["X-Content-SHA256"] = checksum
    return await client.put(URL, data=data, headers=headers)


CHECKSUM_CASES = [
    pytest.param(None, 400, "missing_checksum", id="missing"),
    pytest.param("", 400, "invalid_checksum_header", id="empty"),
    pytest.param("abc123", 400, "invalid_checksum_header", id="too-short"),
    pytest.param("g" * 64, 400, "invalid_checksum_header", id="not-hex"),
    pytest.param("a" * 65, 400, "invalid_checksum_header", id="too-long"),
    pytest.param("sha256=" + "a" * 64, 400, "invalid_checksum_header", id="prefixed"),
    pytest.param("a" * 64, 422, "checksum_mismatch", id="mismatch"),
    pytest.param(
        hashlib.sha256(b"another body").hexdigest(), 422, "checksum_mismatch", id="other-body"
    ),
]


async def test_checksum_header_is_required_and_checked(
    client: Client,
    admin: dict[str, str],
    state: State,
    db: sqlite3.Connection,
    subtests: Subtests,
) -> None:
    await load_plan(client, admin)
    sha_before = db.execute("SELECT package_sha256 FROM exam_plan").fetchone()[0]
    data = package(extra=[("new.txt", b"a new package")])
    for name, (checksum, status, code) in cases(CHECKSUM_CASES):
        with subtests.test(name):
            before = state()
            details = await error_of(await upload(client, admin, data, checksum), status, code)
            if code == "checksum_mismatch":
                assert details == {"expected": checksum, "actual": hashlib.sha256(data).hexdigest()}
            assert state() == before
            assert db.execute("SELECT package_sha256 FROM exam_plan").fetchone()[0] == sha_before
            assert len(before["files"]) == 1  # only the package accepted earlier


async def test_checksum_header_may_be_upper_case(client: Client, admin: dict[str, str]) -> None:
    await load_plan(client, admin, prepare=False)
    data = sample_package()
    response = await upload(client, admin, data, hashlib.sha256(data).hexdigest().upper())
    assert response.status_code == 200


def bad_manifest(**changes: Any) -> dict[str, Any]:
    manifest = sample_manifest()
    manifest.update(changes)
    return manifest


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


INVALID_PACKAGES = [
    # not a zip at all
    pytest.param(b"", "not a zip", id="empty-body"),
    pytest.param(b"hello, this is text", "not a zip", id="text"),
    pytest.param(b"PK\x03\x04" + b"\x00" * 40, "not a zip", id="zip-magic-only"),
    pytest.param(sample_package()[:-30], "not a zip", id="truncated"),
    pytest.param(json.dumps(sample_manifest()).encode(), "not a zip", id="bare-manifest"),
    # the manifest
    pytest.param(make_zip([("README.txt", b"hi")]), "no manifest.json", id="no-manifest"),
    pytest.param(
        make_zip([("exam/manifest.json", manifest_bytes(sample_manifest()))]),
        "no manifest.json",
        id="manifest-in-a-folder",
    ),
    pytest.param(package(b"{not json"), "not UTF-8 JSON", id="manifest-not-json"),
    pytest.param(package(b'\xff\xfe{"a": 1}'), "not UTF-8 JSON", id="manifest-not-utf8"),
    pytest.param(
        package(nested(100_000), compression=zipfile.ZIP_STORED),
        "manifest.json is JSON beyond",
        id="manifest-nested-deep",
    ),
    pytest.param(
        package(b'{"format": ' + b"7" * 5000 + b"}"), "manifest.json is JSON beyond", id="huge-int"
    ),
    pytest.param(package([]), "does not follow", id="manifest-a-list"),
    pytest.param(package(bad_manifest(format="examsync-package/2")), "does not", id="format"),
    pytest.param(package(bad_manifest(exams=[])), "does not follow", id="no-exams"),
    pytest.param(package(bad_manifest(comment="x")), "does not follow", id="unknown-field"),
    pytest.param(
        package(manifest_with(lambda m: m.pop("exams"))), "does not follow", id="missing-exams"
    ),
    pytest.param(
        package(manifest_with(lambda m: question(m).update(type="essay"))),
        "does not follow",
        id="unknown-question-type",
    ),
    pytest.param(
        package(manifest_with(lambda m: question(m).update(quizCode=1))),
        "does not follow",
        id="number-for-quiz-code",
    ),
    pytest.param(
        package(manifest_with(lambda m: question(m).update(maxLength="10"))),
        "does not follow",
        id="string-for-max-length",
    ),
    pytest.param(
        package(manifest_with(lambda m: question(m).update(choices=question(m)["choices"][:1]))),
        "at least two choices",
        id="one-choice",
    ),
    pytest.param(
        package(manifest_with(lambda m: m["exams"].append(copy.deepcopy(m["exams"][0])))),
        "duplicate examCode",
        id="duplicate-exam-code",
    ),
    pytest.param(
        package(manifest_with(lambda m: question(m, 1).update(quizCode="Q001"))),
        "duplicate quizCode",
        id="duplicate-quiz-code",
    ),
    pytest.param(
        package(manifest_with(lambda m: question(m).update(assets=["images/q1.png"]))),
        "asset named in manifest.json is missing",
        id="missing-asset",
    ),
    # paths that leave the package
    pytest.param(package(extra=[("../evil.txt", b"x")]), "escapes", id="dot-dot"),
    pytest.param(package(extra=[("/etc/evil.txt", b"x")]), "escapes", id="absolute"),
    pytest.param(package(extra=[("a/../../b.txt", b"x")]), "escapes", id="dot-dot-inside"),
    pytest.param(package(extra=[("images/../../../b", b"x")]), "escapes", id="deep-dot-dot"),
    pytest.param(package(extra=[("a\\b.txt", b"x")]), "escapes", id="backslash"),
    pytest.param(package(extra=[("..\\evil.txt", b"x")]), "escapes", id="backslash-dot-dot"),
    pytest.param(package(extra=[("\\evil.txt", b"x")]), "escapes", id="backslash-absolute"),
    pytest.param(package(extra=[("C:/evil.txt", b"x")]), "escapes", id="drive-letter"),
    pytest.param(package(extra=[("C:evil.txt", b"x")]), "escapes", id="drive-relative"),
    pytest.param(package(extra=[("..", b"x")]), "escapes", id="parent-itself"),
    # ambiguous or damaged archives
    pytest.param(
        package(extra=[("manifest.json", manifest_bytes(bad_manifest(title="other")))]),
        "appears twice",
        id="two-manifests",
    ),
    pytest.param(with_stored_byte_flipped(), "corrupt member", id="crc-mismatch"),
    pytest.param(with_deflate_stream_broken(), "unreadable member", id="broken-deflate"),
    pytest.param(with_manifest_flags(0x1), "encrypted", id="encrypted-member"),
    pytest.param(with_manifest_method(99), "unreadable member", id="unknown-method"),
]


async def test_invalid_package_is_422_and_nothing_is_stored(
    client: Client, admin: dict[str, str], state: State, subtests: Subtests
) -> None:
    await load_plan(client, admin)
    for name, (data, message) in cases(INVALID_PACKAGES):
        with subtests.test(name):
            before = state()
            response = await upload(client, admin, data)
            details = await error_of(response, 422, "invalid_package")
            error = (await response.get_json())["error"]
            assert message in error["message"], error
            if message == "does not follow":
                assert details["problems"], details
            assert state() == before  # the plan stays ready with its package, nothing stored


def test_path_checks_accept_ordinary_names() -> None:
    for name in ("manifest.json", "images/q1.png", "a/b/c.txt", "한글/문항.png", "a..b.txt"):
        packages._check_name(name)


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """50 MB of zeros deflate to ~50 KB: a ratio no exam document has."""
    return package(extra=[("zeros.bin", bytes(50 * 1024 * 1024))])


async def test_zip_bomb_is_refused_while_unpacking(
    client: Client, admin: dict[str, str], state: State, zip_bomb: bytes
) -> None:
    assert len(zip_bomb) < 200_000
    await load_plan(client, admin)
    before = state()
    details = await error_of(await upload(client, admin, zip_bomb), 422, "invalid_package")
    assert details == {"member": "zeros.bin", "limit": Settings().limits.max_package_unpacked_bytes}
    assert state() == before


@pytest.mark.parametrize("settings_overrides", [{"max_package_unpacked_bytes": 100_000}])
async def test_package_unpacking_beyond_the_total_limit_is_refused(
    client: Client, admin: dict[str, str], state: State
) -> None:
    """Each member is compressed normally; together they unpack past the limit."""
    await load_plan(client, admin)
    before = state()
    members = [(f"images/{i}.bin", os.urandom(30_000)) for i in range(4)]
    details = await error_of(
        await upload(client, admin, package(extra=members)), 422, "invalid_package"
    )
    assert details == {"member": "images/3.bin", "limit": 100_000}
    assert state() == before


@pytest.mark.parametrize("settings_overrides", [{"max_package_members": 3}])
async def test_too_many_members_is_refused(
    client: Client, admin: dict[str, str], state: State
) -> None:
    await load_plan(client, admin)
    before = state()
    data = package(extra=[(f"images/{i}.png", b"png") for i in range(3)])
    details = await error_of(await upload(client, admin, data), 422, "invalid_package")
    assert details == {"limit": 3}
    assert state() == before
    # three members is within the limit
    assert (
        await upload(client, admin, package(extra=[("a", b"1"), ("b", b"2")]))
    ).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"max_package_bytes": 4096}])
async def test_oversize_package_is_413(client: Client, admin: dict[str, str], state: State) -> None:
    await load_plan(client, admin)
    before = state()
    big = package(extra=[("images/big.bin", os.urandom(8192))])
    assert await error_of(await upload(client, admin, big), 413, "payload_too_large") == {
        "limit": 4096
    }
    assert state() == before
    # a package under the limit is taken
    assert (await upload(client, admin, package())).status_code == 200


async def test_package_without_a_stages_exam_is_refused_at_upload(
    client: Client, admin: dict[str, str], state: State
) -> None:
    await load_plan(client, admin)
    before = state()
    data = package(manifest_with(lambda m: m["exams"][0].update(examCode="EXAM209999")))
    details = await error_of(await upload(client, admin, data), 409, "package_mismatch")
    assert details == {"missing_exam_codes": ["EXAM202401"]}
    assert state() == before


async def test_prepare_refuses_a_package_that_no_longer_fits_the_plan(
    client: Client, admin: dict[str, str], state: State, db: sqlite3.Connection
) -> None:
    """The package fitted at upload; the plan was replaced since with another exam code."""
    await load_plan(client, admin, prepare=False)
    replaced = plan_with(("stages.1.exam_code", "EXAM209999"))
    response = await client.put(f"/api/v1/admin/plans/{PLAN_ID}", json=replaced, headers=admin)
    assert response.status_code == 200
    before = state()
    response = await client.post(f"/api/v1/admin/plans/{PLAN_ID}/prepare", headers=admin)
    assert await error_of(response, 409, "package_mismatch") == {
        "missing_exam_codes": ["EXAM209999"]
    }
    assert state() == before
    assert db.execute("SELECT status FROM exam_plan").fetchone()[0] == "created"


# -- upload: accepted ----------------------------------------------------------------------------


async def test_upload_stores_the_package_under_its_digest(
    client: Client, admin: dict[str, str], db: sqlite3.Connection, sync_redis: Any, settings: Any
) -> None:
    await load_plan(client, admin)
    assert sync_redis.hget(f"exam_plan:{PLAN_ID}", "status") == "ready"
    data = package(extra=[("images/q1.png", b"\x89PNG")])
    digest = hashlib.sha256(data).hexdigest()
    response = await client.put(URL, data=data, headers=package_headers(data, admin))
    assert response.status_code == 200
    assert await response.get_json() == {
        "planId": PLAN_ID,
        "sha256": digest,
        "size": len(data),
        "exams": [{"examCode": "EXAM202401", "questions": 5}],
        "status": "created",
    }
    stored = settings.storage.files_dir / "packages" / PLAN_ID / f"{digest}.zip"
    assert stored.read_bytes() == data
    row = db.execute("SELECT package_sha256, package_size, status FROM exam_plan").fetchone()
    assert tuple(row) == (digest, len(data), "created")  # a new package must be prepared again
    assert sync_redis.hget(f"exam_plan:{PLAN_ID}", "status") == "created"
    last = db.execute("SELECT action, details FROM admin_audit ORDER BY audit_id DESC").fetchone()
    assert last["action"] == "package_uploaded" and digest in last["details"]


# -- the candidate's download --------------------------------------------------------------------


async def candidate_token(client: Client, plan_id: str = PLAN_ID, who: str = "CAND202301") -> str:
    body = {"planId": plan_id, "candidateId": who, "authCode": "AUTH1234"}
    token: str = (await login(client, body))["token"]
    return token


async def test_candidate_downloads_the_package_with_its_digest_as_etag(
    client: Client, admin: dict[str, str]
) -> None:
    await load_plan(client, admin)
    data = sample_package()
    digest = hashlib.sha256(data).hexdigest()
    auth = {"Authorization": f"Bearer {await candidate_token(client)}"}
    url = f"/api/v1/plans/{PLAN_ID}/package"

    response = await client.get(url, headers=auth)
    assert response.status_code == 200
    assert await response.get_data() == data
    assert response.content_type == "application/zip"
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.headers["X-Content-SHA256"] == digest
    assert "private" in response.headers["Cache-Control"]

    cached = await client.get(url, headers={**auth, "If-None-Match": f'"{digest}"'})
    assert cached.status_code == 304
    assert await cached.get_data() == b""
    assert cached.headers["ETag"] == f'"{digest}"'

    stale = await client.get(url, headers={**auth, "If-None-Match": '"0000"'})
    assert stale.status_code == 200 and await stale.get_data() == data

    supervisor = await login(
        client, {"planId": PLAN_ID, "supervisorId": "SUP202301", "authCode": "SUPAUTH01"}
    )
    response = await client.get(url, headers={"Authorization": f"Bearer {supervisor['token']}"})
    assert response.status_code == 200


async def test_a_new_package_gets_a_new_etag(client: Client, admin: dict[str, str]) -> None:
    await load_plan(client, admin)
    auth = {"Authorization": f"Bearer {await candidate_token(client)}"}
    old = hashlib.sha256(sample_package()).hexdigest()
    await load_plan(client, admin, package=package(extra=[("v2.txt", b"second edition")]))
    response = await client.get(
        f"/api/v1/plans/{PLAN_ID}/package", headers={**auth, "If-None-Match": f'"{old}"'}
    )
    assert response.status_code == 200
    assert response.headers["ETag"] != f'"{old}"'
    assert zipfile.ZipFile(io.BytesIO(await response.get_data())).read("v2.txt")


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        pytest.param("nobody", 401, "missing_token", id="no-token"),
        pytest.param("forged", 401, "invalid_token", id="forged-token"),
        pytest.param("admin", 403, "session_only", id="admin-token"),
        pytest.param("other-plan", 403, "forbidden", id="other-plans-candidate"),
    ],
)
async def test_package_download_needs_a_session_of_the_plan(
    client: Client, admin: dict[str, str], who: str, status: int, code: str
) -> None:
    await load_plan(client, admin)
    await load_plan(client, admin, plan=other_plan(), plan_id="PLAN202402")
    headers = {
        "nobody": {},
        "forged": {"Authorization": "Bearer forged"},
        "admin": admin,
        "other-plan": {
            "Authorization": f"Bearer {await candidate_token(client, 'PLAN202402', 'OTHER0')}"
        },
    }[who]
    response = await client.get(f"/api/v1/plans/{PLAN_ID}/package", headers=headers)
    await error_of(response, status, code)
