"""Storage: Redis key formats and live state, the SQLite durable store, the file store."""
