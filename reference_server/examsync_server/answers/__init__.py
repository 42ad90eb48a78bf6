"""Answers (seed 002): receiving a save (intake.py), committing it to SQLite and the Redis cache
(sink.py, run by the persister), signing its receipt (signing.py), restoring a sheet
(restore.py)."""
