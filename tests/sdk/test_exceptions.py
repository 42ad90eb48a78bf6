"""The exception hierarchy the module docstring draws (examsync.exceptions)."""

from __future__ import annotations

import examsync.exceptions as exc


def test_hierarchy_matches_the_docstring() -> None:
    parents = {
        exc.ProtocolError: exc.ExamSyncError,
        exc.LocalProtocolError: exc.ProtocolError,
        exc.RemoteProtocolError: exc.ProtocolError,
        exc.ChecksumMismatch: exc.RemoteProtocolError,
        exc.ReceiptError: exc.RemoteProtocolError,
        exc.StorageError: exc.ExamSyncError,
        exc.StorageFullError: exc.StorageError,
        exc.StoreLockedError: exc.StorageError,
        exc.TransportError: exc.ExamSyncError,
        exc.ServerError: exc.ExamSyncError,
        exc.AuthenticationError: exc.ServerError,
        exc.RateLimitedError: exc.ServerError,
    }
    for cls, parent in parents.items():
        assert cls.__bases__ == (parent,), cls
        assert cls.__name__ in (exc.__doc__ or "")
    assert set(exc.__all__) == {c.__name__ for c in parents} | {"ExamSyncError"}


def test_exceptions_carry_fields() -> None:
    error = exc.ServerError("bad", code="checksum_mismatch", status=422, details={"a": 1})
    assert (error.code, error.status, error.details, error.message) == (
        "checksum_mismatch",
        422,
        {"a": 1},
        "bad",
    )
    assert "checksum_mismatch" in str(error)
    mismatch = exc.ChecksumMismatch(expected="ab", actual="cd")
    assert (mismatch.expected, mismatch.actual, mismatch.path) == ("ab", "cd", "checksum")
    assert exc.TransportError("t", timeout=True).timeout
    assert exc.StorageError("s", operation="commit").operation == "commit"
    assert exc.RemoteProtocolError("m", path="a.b").path == "a.b"
    receipt = exc.ReceiptError("bad signature", quiz_code="Q1", key_id="k1")
    assert (receipt.quiz_code, receipt.key_id, receipt.path) == ("Q1", "k1", "results.Q1.receipt")
    locked = exc.StoreLockedError("/s/x.sqlite3", holder=42, timeout=1.5)
    assert (locked.path, locked.holder, locked.timeout, locked.operation) == (
        "/s/x.sqlite3",
        42,
        1.5,
        "lock",
    )
    assert "process 42" in str(locked)


def test_a_server_error_says_how_long_to_wait_when_the_server_did() -> None:
    def error(details: dict[str, object] | None) -> exc.ServerError:
        return exc.ServerError("busy", code="too_many_connections", status=503, details=details)

    assert error({"retryAfter": 3}).retry_after == 3.0
    assert error({"retryAfter": 0.5}).retry_after == 0.5
    for unusable in (None, {}, {"retryAfter": "3"}, {"retryAfter": -1}, {"retryAfter": True}):
        assert error(unusable).retry_after is None
