"""Exam packages: a zip with `manifest.json` at its root (format in docs/package-format.md).

Validation reads every member once, streaming, so sizes are counted as really unpacked (zip
headers can lie), CRCs are checked, and a zip bomb or a path that escapes the package is refused
before anything is stored.
"""

from __future__ import annotations

import io
import json
import lzma
import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..errors import ApiError
from .models import Id, Name, parse

MANIFEST = "manifest.json"
FORMAT = "examsync-package/1"
# More than this many bytes out per byte in is a bomb, not a document.
MAX_RATIO = 200


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    id: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    text: Annotated[str, StringConstraints(max_length=2000)]


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    quizCode: Id
    type: Literal["choice", "text", "number"]
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    choices: list[Choice] = []
    maxLength: Annotated[int, Field(gt=0, le=100_000)] = 10_000
    assets: list[str] = []


class Exam(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    examCode: Id
    title: Name
    questions: Annotated[list[Question], Field(min_length=1, max_length=5_000)]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    format: Literal["examsync-package/1"]
    title: Name
    planId: Id | None = None
    exams: Annotated[list[Exam], Field(min_length=1, max_length=100)]


@dataclass(frozen=True, slots=True)
class PackageLimits:
    max_members: int
    max_unpacked_bytes: int


# What zipfile and its decompressors raise for a damaged archive: a bad CRC or header
# (BadZipFile), an unknown version or method (NotImplementedError), offsets that point
# nowhere (ValueError, OSError, EOFError), undecodable data (zlib.error, lzma.LZMAError).
_DAMAGED = (
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)


def _bad(message: str, **details: object) -> ApiError:
    return ApiError(422, "invalid_package", message, dict(details))


def validate_package(data: bytes, limits: PackageLimits) -> Manifest:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _DAMAGED as exc:
        raise _bad(f"not a zip file: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise _bad("too many files in the package", limit=limits.max_members)
        names = set()
        for info in members:
            _check_name(info.filename)
            if info.filename in names:  # unzippers differ on which copy wins
                raise _bad("a path appears twice in the package", member=info.filename)
            names.add(info.filename)
        if MANIFEST not in names:
            raise _bad("the package has no manifest.json at its root")
        total = 0
        manifest_bytes = b""
        for info in members:
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise _bad("encrypted members are not supported", member=info.filename)
            total = _read_member(archive, info, total, limits)
            if info.filename == MANIFEST:
                manifest_bytes = archive.read(info)
    try:
        raw = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"manifest.json is not UTF-8 JSON: {exc}") from None
    except (ValueError, RecursionError):  # a number of thousands of digits, nesting too deep
        raise _bad("manifest.json is JSON beyond what a manifest holds") from None
    try:
        manifest = parse(Manifest, raw)
    except ApiError as exc:
        raise _bad("manifest.json does not follow " + FORMAT, **exc.details) from None
    _check_manifest(manifest, names)
    return manifest


def _check_name(name: str) -> None:
    normal = posixpath.normpath(name)
    if (
        name.startswith(("/", "\\"))
        or "\\" in name
        or ":" in name.split("/")[0]
        or normal.startswith("..")
        or "/../" in f"/{name}/"
        or "\x00" in name
    ):
        raise _bad("a path in the package escapes it", member=name)


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, total: int, limits: PackageLimits
) -> int:
    """Stream one member, counting real bytes; returns the running total."""
    budget = min(limits.max_unpacked_bytes - total, max(info.compress_size, 1) * MAX_RATIO + 65536)
    size = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(1 << 16):
                size += len(chunk)
                if size > budget:
                    raise _bad(
                        "the package unpacks too large (a zip bomb?)",
                        member=info.filename,
                        limit=limits.max_unpacked_bytes,
                    )
    except zipfile.BadZipFile as exc:  # CRC mismatch and friends
        raise _bad(f"corrupt member: {exc}", member=info.filename) from None
    except _DAMAGED as exc:
        raise _bad(f"unreadable member: {exc}", member=info.filename) from None
    return total + size


def _check_manifest(manifest: Manifest, names: set[str]) -> None:
    codes = [e.examCode for e in manifest.exams]
    if len(set(codes)) != len(codes):
        raise _bad("duplicate examCode in manifest.json")
    for exam in manifest.exams:
        quiz = [q.quizCode for q in exam.questions]
        if len(set(quiz)) != len(quiz):
            raise _bad("duplicate quizCode in manifest.json", examCode=exam.examCode)
        for q in exam.questions:
            if q.type == "choice" and len(q.choices) < 2:
                raise _bad("a choice question needs at least two choices", quizCode=q.quizCode)
            for asset in q.assets:
                if asset not in names:
                    raise _bad("an asset named in manifest.json is missing", asset=asset)


def read_manifest(data: bytes) -> dict[str, Any]:
    """manifest.json of a package that validate_package has already accepted."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read(MANIFEST))
    return loaded
