"""The upload queue (captures, log batches): durable before add returns, removed only when the
server took it or refused it for good, retried with backoff otherwise; survives a restart."""

from __future__ import annotations

import pytest

from examsync import Backoff, MemoryStorage, Upload, UploadOutcome, UploadQueue


def upload(n: int, at: float = 0.0) -> Upload:
    return Upload(f"cap-{n}", "capture", {"kind": "webcam"}, "image/jpeg", b"\xff\xd8\xff", at)


def queue(storage: MemoryStorage) -> UploadQueue:
    # rng 0.5: half of each ceiling (1, 2, 4 s ...), so the delays are exact
    return UploadQueue(storage, lambda: 0.5, Backoff(base=2.0, cap=60.0, min_delay=0.0))


def test_an_upload_is_stored_before_add_returns_and_gone_once_stored_by_the_server() -> None:
    storage = MemoryStorage()
    q = queue(storage)
    q.add(upload(1))
    assert set(storage.load().uploads) == {"cap-1"}
    sent = q.next_upload(0.0)
    assert sent is not None and sent.upload_id == "cap-1"
    assert q.next_upload(0.0) is None  # one in flight at a time
    assert q.answered("cap-1", 200, None, 0.1) == UploadOutcome("cap-1", "capture", "stored")
    assert storage.load().uploads == {} and q.pending == 0


def test_failures_are_retried_with_backoff_and_retry_after_wins_when_longer() -> None:
    q = queue(MemoryStorage())
    q.add(upload(1))
    assert q.next_upload(10.0) is not None
    q.failed("cap-1", 10.0)  # no answer: 1 s
    assert q.next_deadline() == pytest.approx(11.0)
    assert q.next_upload(10.5) is None
    assert q.next_upload(11.0) is not None
    assert q.answered("cap-1", 503, None, 11.0) is None  # 2 s
    assert q.next_deadline() == pytest.approx(13.0)
    assert q.next_upload(13.0) is not None
    assert q.answered("cap-1", 429, 9.0, 13.0) is None  # the server's 9 s over 4 s
    assert q.next_deadline() == pytest.approx(22.0)
    q.connection_restored(14.0)  # a reconnect retries at once
    assert q.next_upload(14.0) is not None


@pytest.mark.parametrize("status", [400, 401, 403, 409, 413, 415, 422])
def test_an_upload_refused_for_good_is_reported_and_dropped(status: int) -> None:
    storage = MemoryStorage()
    q = queue(storage)
    q.add(upload(1))
    assert q.next_upload(0.0) is not None
    outcome = q.answered("cap-1", status, None, 0.0)
    assert outcome == UploadOutcome("cap-1", "capture", "refused", f"HTTP {status}")
    assert storage.load().uploads == {}


def test_a_restarted_queue_sends_what_was_stored_oldest_first() -> None:
    storage = MemoryStorage()
    q = queue(storage)
    q.add(upload(2, at=20.0))
    q.add(upload(1, at=10.0))
    assert q.next_upload(0.0) is not None  # in flight when the process dies
    again = queue(storage)
    assert again.pending == 2
    first = again.next_upload(0.0)
    assert first is not None and first.upload_id == "cap-1"


def test_the_same_upload_twice_is_a_caller_error() -> None:
    q = queue(MemoryStorage())
    q.add(upload(1))
    with pytest.raises(ValueError):
        q.add(upload(1))
