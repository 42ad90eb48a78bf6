"""Small helpers every layer may use: clocks, the server's own JSON, upload digests, background
task rules. Nothing here imports the rest of the server."""
