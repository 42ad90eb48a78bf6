-- Captures (seed 002 미디어: webcam, screen, mobile, audio) and log batches (seed 002 로그):
-- the blobs live in the file store (content-addressed), these rows say whose, what and when.
-- The client names each upload (captureId, batchId), so a retry is recognised, not doubled.
CREATE TABLE capture (
    candidate_id TEXT NOT NULL,
    capture_id   TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('webcam', 'screen', 'mobile', 'audio')),
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    captured_at  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    stored_at    TEXT NOT NULL,
    path         TEXT NOT NULL,
    late         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (candidate_id, capture_id)
) WITHOUT ROWID;

CREATE INDEX capture_by_time ON capture (plan_id, candidate_id, captured_at);

CREATE TABLE log_batch (
    candidate_id TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    entries      INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    first_at     TEXT NOT NULL,
    last_at      TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    stored_at    TEXT NOT NULL,
    path         TEXT NOT NULL,
    late         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (candidate_id, batch_id)
) WITHOUT ROWID;
