-- The five tables of seed 003 with every field, plus what the server needs to run a plan:
-- plan/candidate status and stage clocks, package metadata, key-login keys, supervisor
-- credentials (DESIGN §4) and an audit of admin actions.
-- Candidate, supervisor and group ids are global, as the seed's Redis keys are
-- (exam_candidate:{candidate_id}:status); stage ids are per plan (exam_plan:{plan_id}:stage:{stage_id}).

CREATE TABLE exam_plan (
    plan_id                    TEXT PRIMARY KEY,
    exam_name                  TEXT NOT NULL,
    start_datetime             TEXT NOT NULL,
    end_datetime               TEXT NOT NULL,
    login_method               TEXT NOT NULL CHECK (login_method IN ('web', 'key')),
    conduct_type               TEXT NOT NULL CHECK (conduct_type IN ('simultaneous', 'individual')),
    requires_supervisor        INTEGER NOT NULL,
    enables_cheating_detection INTEGER NOT NULL,
    requires_camera            INTEGER NOT NULL,
    camera_capture_interval    INTEGER,
    enables_ai_monitoring      INTEGER NOT NULL,
    enables_gaze_tracking      INTEGER NOT NULL,
    allows_mobile_camera       INTEGER NOT NULL,
    shuffle_questions          INTEGER NOT NULL,
    shuffle_answers            INTEGER NOT NULL,
    status                     TEXT NOT NULL DEFAULT 'created'
                               CHECK (status IN ('created', 'ready', 'in_progress', 'completed')),
    package_sha256             TEXT,
    package_size               INTEGER,
    started_at                 TEXT,
    ended_at                   TEXT,
    -- The plan-wide stage clock of a simultaneous exam (동시시험).
    current_stage_id           TEXT,
    stage_started_at           TEXT,
    stage_deadline             REAL,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
);

CREATE TABLE exam_group (
    group_id          TEXT PRIMARY KEY,
    plan_id           TEXT NOT NULL REFERENCES exam_plan (plan_id) ON DELETE CASCADE,
    group_name        TEXT NOT NULL,
    group_description TEXT,
    start_datetime    TEXT,
    end_datetime      TEXT
);

CREATE TABLE exam_stage (
    plan_id             TEXT NOT NULL REFERENCES exam_plan (plan_id) ON DELETE CASCADE,
    stage_id            TEXT NOT NULL,
    stage_order         INTEGER NOT NULL,
    stage_name          TEXT NOT NULL,
    time_limit_seconds  INTEGER,
    auto_move_enabled   INTEGER NOT NULL,
    exam_code           TEXT,
    allocated_exam_time INTEGER,
    PRIMARY KEY (plan_id, stage_id),
    UNIQUE (plan_id, stage_order)
);

CREATE TABLE exam_candidate (
    candidate_id           TEXT PRIMARY KEY,
    plan_id                TEXT NOT NULL REFERENCES exam_plan (plan_id) ON DELETE CASCADE,
    candidate_name         TEXT NOT NULL,
    candidate_auth_code    TEXT NOT NULL,
    grade_level            TEXT,
    email_address          TEXT,
    additional_info        TEXT,
    group_id               TEXT REFERENCES exam_group (group_id),
    temp_answer_file_path  TEXT,
    final_answer_file_path TEXT,
    capture_file_path      TEXT,
    access_key             TEXT NOT NULL UNIQUE,
    status                 TEXT NOT NULL DEFAULT 'ready'
                           CHECK (status IN ('ready', 'in_progress', 'completed')),
    -- The candidate's own stage clock in an individual exam (개별시험).
    started_at             TEXT,
    current_stage_id       TEXT,
    stage_started_at       TEXT,
    stage_deadline         REAL,
    last_active_time       TEXT
);
CREATE INDEX exam_candidate_plan ON exam_candidate (plan_id, group_id);
CREATE INDEX exam_candidate_deadline ON exam_candidate (stage_deadline)
    WHERE stage_deadline IS NOT NULL;

CREATE TABLE exam_supervisor (
    supervisor_id        TEXT PRIMARY KEY,
    plan_id              TEXT NOT NULL REFERENCES exam_plan (plan_id) ON DELETE CASCADE,
    supervisor_name      TEXT NOT NULL,
    group_id             TEXT REFERENCES exam_group (group_id),
    supervisor_auth_code TEXT NOT NULL
);
CREATE INDEX exam_supervisor_plan ON exam_supervisor (plan_id, group_id);

CREATE TABLE admin_audit (
    audit_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    action     TEXT NOT NULL,
    plan_id    TEXT,
    details    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_plan ON admin_audit (plan_id, audit_id);

-- Transactional outbox: events written in the same transaction as the state change they
-- announce, then relayed to their Redis stream and deleted. A crash or a Redis outage between
-- the commit and the publish delays an event (exam_end, a stage change); it never loses it.
CREATE TABLE event_outbox (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT NOT NULL,
    fields     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
