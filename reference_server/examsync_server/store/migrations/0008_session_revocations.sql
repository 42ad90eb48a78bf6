-- Revoked sessions (docs/server.md, "Revoking sessions"): the sessions of one person of a plan,
-- of every person of a role (subject_id ''), or of the whole plan (role '' and subject_id '')
-- signed before `revoked_before` (epoch seconds) are refused. Tokens are checked in memory,
-- so each process loads these rows at start and again every few seconds; a row older than the
-- session lifetime refuses nothing that could still be alive and is skipped by the load.

CREATE TABLE session_revocation (
    plan_id        TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('candidate', 'supervisor', '')),
    subject_id     TEXT NOT NULL,
    revoked_before REAL NOT NULL,
    reason         TEXT NOT NULL,
    at             TEXT NOT NULL,
    PRIMARY KEY (plan_id, role, subject_id)
) WITHOUT ROWID;

CREATE INDEX session_revocation_recent ON session_revocation (revoked_before);
