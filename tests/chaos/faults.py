"""Faults at seeded random times: the schedule (pure: a seed gives the same schedule), and the
injector that applies one fault to the cluster (cluster.py) and mends it.

Kinds (``KINDS``): kills (-9) of one HTTP process, of the persister, of the whole server (then
restarted), of Redis (restarted from its AOF); network cuts and delays of some devices;
SIGSTOP/SIGCONT of one server process; a full disk under SQLite; Redis losing acknowledged
data: FLUSHALL, and the AOF rolled back a second.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from integration.proxy import TcpProxy

from .cluster import DeviceNetwork, RedisNode, ServerNode, SmallDisk

KINDS = (
    "kill_http",
    "kill_persister",
    "kill_server",
    "kill_redis",
    "redis_flush",
    "net_cut",
    "net_delay",
    "sigstop",
    "disk_full",
    "aof_rollback",
)
ROLLBACK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Planned:
    at: float  # seconds after the devices start typing
    kind: str
    hold: float  # seconds the fault lasts (a kill's restart waits this long)
    pick: int  # which process or devices it hits (modulo their count)


def schedule(seed: int, kinds: Sequence[str], count: int, span: float) -> list[Planned]:
    """``count`` faults over ``span`` seconds, every kind once before any twice (in a seeded
    order), each in a slot of its own so that they do not overlap."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < count:
        round_ = list(kinds)
        rng.shuffle(round_)
        order += round_
    slot = span / max(count, 1)
    return [
        Planned(
            at=round(i * slot + rng.uniform(0.1, 0.3) * slot, 2),
            kind=kind,
            hold=round(rng.uniform(0.5, min(4.0, 0.5 * slot)), 2),
            pick=rng.randrange(1 << 16),
        )
        for i, kind in enumerate(order[:count])
    ]


@dataclass(frozen=True, slots=True)
class Injected:
    planned: Planned
    started: float  # epoch seconds
    mended: float  # the fault is over (healed, resumed, restarted)
    devices: tuple[int, ...] | None  # the devices it hit; None: all
    note: str = ""


class Injector:
    """Applies a planned fault to the cluster and mends it (blocking for its hold)."""

    def __init__(
        self,
        redis_node: RedisNode,
        server: ServerNode,
        disk: SmallDisk,
        networks: Sequence[DeviceNetwork],
    ) -> None:
        self.redis, self.server, self.disk, self.networks = redis_node, server, disk, networks

    def inject(self, fault: Planned) -> Injected:
        started = time.time()
        devices, note = getattr(self, f"_{fault.kind}")(fault)
        return Injected(fault, started, time.time(), devices, note)

    def _kill(self, role: str, fault: Planned) -> tuple[None, str]:
        pid = self.server.pick(role, fault.pick)
        os.kill(pid, signal.SIGKILL)  # the parent restarts it after a second
        return None, f"pid {pid}"

    def _kill_http(self, fault: Planned) -> tuple[None, str]:
        return self._kill("http", fault)

    def _kill_persister(self, fault: Planned) -> tuple[None, str]:
        return self._kill("persister", fault)

    def _kill_server(self, fault: Planned) -> tuple[None, str]:
        self.server.kill_all()
        time.sleep(fault.hold)
        self.server.start()
        return None, ""

    def _kill_redis(self, fault: Planned) -> tuple[None, str]:
        self.redis.kill()
        time.sleep(fault.hold)
        self.redis.start()
        return None, ""

    def _redis_flush(self, fault: Planned) -> tuple[None, str]:
        self.redis.flush_all()
        return None, ""

    def _aof_rollback(self, fault: Planned) -> tuple[None, str]:
        back = self.redis.roll_back(ROLLBACK_SECONDS)
        return None, f"{back:.2f} s back"

    def _some_devices(self, fault: Planned) -> tuple[int, ...]:
        """About half the devices (at least one), chosen by the fault's pick."""
        rng = random.Random(fault.pick)
        n = len(self.networks)
        return tuple(sorted(rng.sample(range(n), max(1, n // 2))))

    def _net_cut(self, fault: Planned) -> tuple[tuple[int, ...], str]:
        return self._on_some_networks(fault, TcpProxy.cut, TcpProxy.heal), ""

    def _net_delay(self, fault: Planned) -> tuple[tuple[int, ...], str]:
        return self._on_some_networks(fault, TcpProxy.pause, TcpProxy.resume), ""

    def _on_some_networks(
        self, fault: Planned, begin: Callable[[TcpProxy], None], end: Callable[[TcpProxy], None]
    ) -> tuple[int, ...]:
        """``begin`` on both proxies of about half the devices, ``end`` after the hold."""
        hit = self._some_devices(fault)
        proxies = [proxy for i in hit for proxy in self.networks[i].proxies()]
        for proxy in proxies:
            begin(proxy)
        time.sleep(fault.hold)
        for proxy in proxies:
            end(proxy)
        return hit

    def _sigstop(self, fault: Planned) -> tuple[None, str]:
        pid = self.server.pick(None, fault.pick)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(fault.hold)
        os.kill(pid, signal.SIGCONT)
        return None, f"pid {pid}"

    def _disk_full(self, fault: Planned) -> tuple[None, str]:
        self.disk.fill()
        time.sleep(fault.hold)
        self.disk.empty()
        return None, ""
