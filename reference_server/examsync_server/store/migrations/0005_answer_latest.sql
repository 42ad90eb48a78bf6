-- Each answer's value is written once, into its history row; the latest version of an answer
-- only points at that row. Before, `answer` held a second copy of every value: rows of ~1-2 KB
-- in a WITHOUT ROWID table spill onto overflow pages, so each save rewrote ~5 random pages
-- (1,261 WAL pages per batch of 230 saves, bench/commit.py: half of the persister's time).
-- Now a batch appends history rows and touches small pages per candidate (650 WAL pages).
--
-- History stays idempotent: the unique key leads with the stream message id, which only grows,
-- so its inserts append instead of landing on a random page. A message persisted twice (a crash
-- between the commit and the XACK) adds nothing; a client's retry of a superseded save is a new
-- message and is recorded as it arrived. The candidate and exam code are part of the key too,
-- so a message id that ever came round again (a Redis that lost its stream, a clock set back)
-- cannot pass one candidate's row off as another's.
--
-- The old history's unique index (candidate, exam code, quiz code, version, digest) finds each
-- latest answer's row below; it goes only after that, with the old table.

-- The latest version of each answer; (message_id, plan_id, candidate_id, exam_code, quiz_code,
-- version, value_sha256) names its history row. value_sha256 is kept here too: a restore checks
-- the value it reads from history against it.
CREATE TABLE answer_latest (
    candidate_id TEXT NOT NULL,
    exam_code    TEXT NOT NULL,
    quiz_code    TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    version      INTEGER NOT NULL,
    value_sha256 TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    PRIMARY KEY (candidate_id, exam_code, quiz_code)
) WITHOUT ROWID;

-- Every latest answer has had its history row since 0002; should one be missing, it is made
-- here, so that no answer is lost on the way.
INSERT INTO answer_history (candidate_id, exam_code, quiz_code, plan_id, value, value_sha256,
                            version, updated, server_time, result, late, message_id)
SELECT a.candidate_id, a.exam_code, a.quiz_code, a.plan_id, a.value, a.value_sha256,
       a.version, a.updated, a.server_time, 'accepted', a.late,
       '0-0:' || a.candidate_id || ':' || a.exam_code
FROM answer AS a
WHERE NOT EXISTS (
    SELECT 1 FROM answer_history AS h
    WHERE h.candidate_id = a.candidate_id AND h.exam_code = a.exam_code
      AND h.quiz_code = a.quiz_code AND h.version = a.version
      AND h.value_sha256 = a.value_sha256
);

INSERT INTO answer_latest
SELECT a.candidate_id, a.exam_code, a.quiz_code, a.plan_id, a.version, a.value_sha256,
       (SELECT h.message_id FROM answer_history AS h
        WHERE h.candidate_id = a.candidate_id AND h.exam_code = a.exam_code
          AND h.quiz_code = a.quiz_code AND h.version = a.version
          AND h.value_sha256 = a.value_sha256)
FROM answer AS a;

DROP TABLE answer;

CREATE TABLE answer_history_v5 (
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
    message_id   TEXT NOT NULL
);

INSERT INTO answer_history_v5 SELECT * FROM answer_history;

DROP TABLE answer_history;

ALTER TABLE answer_history_v5 RENAME TO answer_history;

CREATE UNIQUE INDEX answer_history_once ON answer_history
    (message_id, plan_id, candidate_id, exam_code, quiz_code, version, value_sha256);

CREATE INDEX answer_history_by_sheet ON answer_history (candidate_id, exam_code);

-- What `answer` held before, for every reader (restore, exports, operators' queries). A latest
-- answer whose history row is gone still shows, with no value: a restore then lists it as
-- damaged instead of leaving it out unnoticed.
CREATE VIEW answer AS
SELECT l.candidate_id, l.exam_code, l.quiz_code, l.plan_id, h.value, l.value_sha256,
       l.version, h.updated, h.server_time, h.late
FROM answer_latest AS l
LEFT JOIN answer_history AS h
    ON h.message_id = l.message_id AND h.plan_id = l.plan_id
   AND h.candidate_id = l.candidate_id AND h.exam_code = l.exam_code
   AND h.quiz_code = l.quiz_code AND h.version = l.version
   AND h.value_sha256 = l.value_sha256;
