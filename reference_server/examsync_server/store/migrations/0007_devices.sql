-- One candidate on several devices (docs/protocol.md, "Several devices"): the plan says whether
-- one device at a time may save (`single`) or all of them (`merge`), and each candidate keeps
-- which device signed in last to take the exam (its id, and since when, ISO 8601 UTC ms).
-- ADD COLUMN with a constant default rewrites no row.

ALTER TABLE exam_plan ADD COLUMN device_policy TEXT NOT NULL DEFAULT 'single'
    CHECK (device_policy IN ('single', 'merge'));

ALTER TABLE exam_candidate ADD COLUMN active_device TEXT;

ALTER TABLE exam_candidate ADD COLUMN active_since TEXT;
