"""How the demo's tests and benchmarks start the system's Chromium (headless, Playwright).

Playwright's own browser download needs the internet, so the system's Chromium is used
(Debian: `apt-get install chromium`; `EXAMSYNC_CHROMIUM` names another binary). The flags are
what Debian's Chromium needs in a container, plus a fake webcam for the capture code.
"""

from __future__ import annotations

import os
import shutil

ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
)


def executable() -> str:
    """The Chromium binary; FileNotFoundError (saying how to get one) when there is none."""
    found = os.environ.get("EXAMSYNC_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise FileNotFoundError(
            "no Chromium: apt-get install chromium, or set EXAMSYNC_CHROMIUM to its path"
        )
    return found
