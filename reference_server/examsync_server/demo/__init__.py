"""The seeds' sample plan (PLAN202401) and a small exam package, for `examsync demo` and tests."""
