"""Seed 004 §10.4 `clientInfo`: who is on the other end of a socket, for the supervisors."""

from __future__ import annotations

import re
from typing import Any

from websockets.asyncio.server import ServerConnection

MAX_USER_AGENT = 300

# Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+(?:\.\d+)?)")),
    ("Opera", re.compile(r"\bOPR/(\d+(?:\.\d+)?)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+(?:\.\d+)?)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+(?:\.\d+)?)")),
    ("Chrome", re.compile(r"\b(?:Chrome|Chromium|CriOS)/(\d+(?:\.\d+)?)")),
    ("Safari", re.compile(r"\bVersion/(\d+(?:\.\d+)?)(?:\.\d+)* (?:Mobile/\S+ )?Safari/")),
)


def browser_info(user_agent: str) -> str:
    """`Chrome 120.0` as the seed writes it; a client that is no browser keeps its own words
    (`Python/3.11 websockets/13.1`), and no header gives the empty string."""
    for name, pattern in _BROWSERS:
        found = pattern.search(user_agent)
        if found:
            version = found.group(1)
            return f"{name} {version if '.' in version else version + '.0'}"
    return user_agent.strip()[:80]


def client_info(conn: ServerConnection) -> dict[str, Any]:
    """`ipAddress` and `browserInfo` (seed 004), plus the raw `userAgent` for the curious and
    the `transport` (`websocket`; `http` for a client that polls: polling.py)."""
    request = conn.request
    user_agent = request.headers.get("User-Agent", "") if request else ""
    address = conn.remote_address
    ip = str(address[0]) if isinstance(address, tuple) and address else ""
    return describe(ip, user_agent, "websocket")


def describe(ip: str, user_agent: str, transport: str) -> dict[str, Any]:
    user_agent = user_agent[:MAX_USER_AGENT]
    return {
        "ipAddress": ip,
        "browserInfo": browser_info(user_agent),
        "userAgent": user_agent,
        "transport": transport,
    }
