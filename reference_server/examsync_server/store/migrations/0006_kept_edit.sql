-- The latest edit wins (docs/protocol.md, "Several devices"): each latest answer keeps when its
-- edit was made (`edited_at`, milliseconds since the epoch, server clock) and on which device,
-- the two things a new edit is judged against; history records each edit's device too.
--
-- Fast on big databases: ADD COLUMN with a constant default rewrites no row, and the backfill
-- finds each latest answer's history row through answer_history_once (one index seek each).

ALTER TABLE answer_latest ADD COLUMN edited_at INTEGER NOT NULL DEFAULT 0;

ALTER TABLE answer_latest ADD COLUMN device TEXT NOT NULL DEFAULT '';

ALTER TABLE answer_history ADD COLUMN device TEXT NOT NULL DEFAULT '';

-- An edit's time is its `updated`, but never after the server had it (examsync.edits): the
-- commit time (`server_time`) stands in for the receive time here. A `updated` SQLite cannot
-- read counts as the commit time; an answer whose history row is gone, as 0 (any edit wins).
UPDATE answer_latest SET edited_at = COALESCE((
    SELECT COALESCE(MIN(CAST(ROUND((julianday(h.updated) - 2440587.5) * 86400000) AS INTEGER),
                        CAST(ROUND((julianday(h.server_time) - 2440587.5) * 86400000) AS INTEGER)),
                    CAST(ROUND((julianday(h.server_time) - 2440587.5) * 86400000) AS INTEGER))
    FROM answer_history AS h
    WHERE h.message_id = answer_latest.message_id AND h.plan_id = answer_latest.plan_id
      AND h.candidate_id = answer_latest.candidate_id AND h.exam_code = answer_latest.exam_code
      AND h.quiz_code = answer_latest.quiz_code AND h.version = answer_latest.version
      AND h.value_sha256 = answer_latest.value_sha256
), 0);

-- `updated` of an answer is now its kept edit's time, as a wire timestamp (the same text
-- examsync.protocol.format_timestamp writes, so a restore from SQLite matches the cache's);
-- history keeps each edit's `updated` as it arrived.
DROP VIEW answer;

CREATE VIEW answer AS
SELECT l.candidate_id, l.exam_code, l.quiz_code, l.plan_id, h.value, l.value_sha256,
       l.version,
       strftime('%Y-%m-%dT%H:%M:%S', l.edited_at / 1000, 'unixepoch')
           || printf('.%03dZ', l.edited_at % 1000) AS updated,
       h.server_time, h.late, l.edited_at, l.device
FROM answer_latest AS l
LEFT JOIN answer_history AS h
    ON h.message_id = l.message_id AND h.plan_id = l.plan_id
   AND h.candidate_id = l.candidate_id AND h.exam_code = l.exam_code
   AND h.quiz_code = l.quiz_code AND h.version = l.version
   AND h.value_sha256 = l.value_sha256;
