"""Background workers, plain async functions run as tasks: fan-out, stage timers."""
