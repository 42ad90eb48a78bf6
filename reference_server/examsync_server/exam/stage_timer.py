"""Stage timers: move stage clocks on when an auto-moving stage runs out; repair Redis.

Any process may run this; the guarded moves in `StageMoves` make sure each move happens once.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from ..base.clock import utc_now
from ..base.tasks import cancel_requested
from ..errors import ApiError
from .lifecycle import Lifecycle
from .stage_moves import StageMoves

log = logging.getLogger(__name__)


async def run_stage_timer(
    lifecycle: Lifecycle, moves: StageMoves, tick_seconds: float, repair_seconds: float
) -> None:
    since_repair = repair_seconds  # repair once at start-up: Redis may have restarted
    while not cancel_requested():
        try:
            if since_repair >= repair_seconds:
                since_repair = 0.0
                await lifecycle.repair()
            await moves.due_moves(utc_now())
        except asyncio.CancelledError:
            raise
        except (RedisError, ApiError) as exc:
            log.warning("stage timer: %s; retrying", exc)
        except Exception:  # a bug here must not stop every exam's clock
            log.exception("stage timer failed; retrying")
        await asyncio.sleep(tick_seconds)
        since_repair += tick_seconds
