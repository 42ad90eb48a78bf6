"""Versioned SQLite migrations: `NNNN_name.sql`, applied in order; see PRAGMA user_version."""
