-- Answers (seed 002): the latest version per candidate/exam_code/quiz_code, every accepted or
-- superseded version in history, the per-sheet metadata of seed 002 §4.2 and navigation.
-- History is idempotent (one row per version and value), so a message persisted twice after a
-- crash between the commit and the XACK adds nothing.

CREATE TABLE answer (
    candidate_id TEXT NOT NULL,
    exam_code    TEXT NOT NULL,
    quiz_code    TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    value        TEXT NOT NULL,
    value_sha256 TEXT NOT NULL,
    version      INTEGER NOT NULL,
    updated      TEXT NOT NULL,
    server_time  TEXT NOT NULL,
    late         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (candidate_id, exam_code, quiz_code)
) WITHOUT ROWID;

CREATE TABLE answer_history (
    history_id   INTEGER PRIMARY KEY,
    candidate_id TEXT NOT NULL,
    exam_code    TEXT NOT NULL,
    quiz_code    TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    value        TEXT NOT NULL,
    value_sha256 TEXT NOT NULL,
    version      INTEGER NOT NULL,
    updated      TEXT NOT NULL,
    server_time  TEXT NOT NULL,
    result       TEXT NOT NULL CHECK (result IN ('accepted', 'superseded')),
    late         INTEGER NOT NULL DEFAULT 0,
    message_id   TEXT NOT NULL,
    UNIQUE (candidate_id, exam_code, quiz_code, version, value_sha256)
);

CREATE TABLE answer_sheet (
    candidate_id   TEXT NOT NULL,
    exam_code      TEXT NOT NULL,
    plan_id        TEXT NOT NULL,
    last_sync      TEXT NOT NULL,
    version        INTEGER NOT NULL,
    status         TEXT NOT NULL,
    device_type    TEXT,
    device_browser TEXT,
    device_os      TEXT,
    focus_time     INTEGER NOT NULL DEFAULT 0,
    edit_count     INTEGER NOT NULL DEFAULT 0,
    keystrokes     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (candidate_id, exam_code)
) WITHOUT ROWID;

CREATE TABLE answer_navigation (
    candidate_id TEXT NOT NULL,
    exam_code    TEXT NOT NULL,
    at           TEXT NOT NULL,
    from_quiz    TEXT NOT NULL,
    to_quiz      TEXT NOT NULL,
    PRIMARY KEY (candidate_id, exam_code, at, from_quiz, to_quiz)
) WITHOUT ROWID;

-- Messages that failed to persist N times (seed 002 §5.1 재처리 큐), for admins to replay.
CREATE TABLE dead_letter (
    dead_letter_id INTEGER PRIMARY KEY,
    plan_id        TEXT NOT NULL,
    stream         TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    fields         TEXT NOT NULL,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    replayed_at    TEXT,
    UNIQUE (stream, message_id)
);
