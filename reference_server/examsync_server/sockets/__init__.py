"""The socket server of DESIGN §3: its own asyncio server on the `websockets` library."""
