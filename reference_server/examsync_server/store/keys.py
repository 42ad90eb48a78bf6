"""Every Redis key and stream name the server uses, in one place (seeds 000, 001, 002, 003, 004).

Keys are the seeds' formats to the letter; the stream names beside them are ours where the
seeds only name a queue.
"""

from __future__ import annotations


def plan(plan_id: str) -> str:
    """Hash: exam name, schedule, status (seed 000 §3.1.1, seed 003 §7)."""
    return f"exam_plan:{plan_id}"


def stage(plan_id: str, stage_id: str) -> str:
    """Hash: one stage's name, limits and auto-move flag (seed 003 §7)."""
    return f"exam_plan:{plan_id}:stage:{stage_id}"


def candidate_status(candidate_id: str) -> str:
    """Hash: status, current_stage, last_active_time (seed 000 §3.1.2, seed 001 §3.1)."""
    return f"exam_candidate:{candidate_id}:status"


def supervisor_info(supervisor_id: str) -> str:
    """Hash: name, group_id (seed 003 §7)."""
    return f"exam_supervisor:{supervisor_id}:info"


def group_info(group_id: str) -> str:
    """Hash: group name and schedule (seed 003 §7)."""
    return f"exam_group:{group_id}:info"


def plan_devices(plan_id: str) -> str:
    """Hash: candidate id → `"<deviceId> <since, epoch ms>"`, the device each candidate last
    signed in from to take the exam (ours; SQLite holds the same, Redis is its copy for the
    save queue's check)."""
    return f"plan_devices:{plan_id}"


def plan_queue(plan_id: str) -> str:
    """Hash: {"queue_status": "initialized"} once the plan's queues exist (seed 000 §3.1.3)."""
    return f"exam_queue:{plan_id}"


def answer_cache(exam_id: str, test_code: str, user_id: str) -> str:
    """The latest committed answers of one candidate in one exam (seed 002 §4.2)."""
    return f"exam:{exam_id}:test:{test_code}:user:{user_id}"


def recent(plan_id: str, candidate_id: str, kind: str) -> str:
    """Stream: the last ~5 minutes of a candidate's captures (`media`) or log entries (`logs`),
    the seed 002 "Redis 캐시 5분 데이터"; older entries are trimmed as new ones arrive."""
    return f"exam:{plan_id}:user:{candidate_id}:{kind}"


def capture_rate(plan_id: str, candidate_id: str, kind: str) -> str:
    """String: the captureId that holds a candidate's slot for one capture kind until it
    expires (the minimum interval between two captures of that kind)."""
    return f"exam:{plan_id}:user:{candidate_id}:capture_slot:{kind}"


def examinee_socket(plan_id: str, socket_id: str) -> str:
    """Hash: examineeId, status, lastHeartbeat (seed 004 §10.5)."""
    return f"plan:{plan_id}:socket:examinee:{socket_id}"


def examinee_progress(plan_id: str, examinee_id: str) -> str:
    """Hash: connStatusCode, lastActiveTime (seed 004 §10.5)."""
    return f"plan:{plan_id}:examinee:{examinee_id}:progress"


def examinee_sockets(plan_id: str, examinee_id: str) -> str:
    """Set: the examinee's sockets the state manager holds CONNECTED (ours, beside seed 004's
    keys). The examinee is CONNECTED while it is not empty, so the order in which two sockets'
    messages are handled does not matter."""
    return f"plan:{plan_id}:examinee:{examinee_id}:sockets"


def examinee_sync(plan_id: str, examinee_id: str) -> str:
    """Hash: pending, oldestPendingAge, reportedAt — what the examinee's SDK last said about its
    unacknowledged answers (ours: the `sync_state` frame), for the supervisors' snapshot."""
    return f"plan:{plan_id}:examinee:{examinee_id}:sync"


def socket_node(node_id: str) -> str:
    """String with a TTL: this socket-server process is alive (refreshed by its heartbeat)."""
    return f"socket_node:{node_id}"


def node_sockets(node_id: str) -> str:
    """Set: the sockets of one process that the state manager holds CONNECTED (ours), as JSON
    `[planId, examineeId, socketId]`; the sweeper reports them when the process is gone."""
    return f"socket_node:{node_id}:sockets"


def ack_record(node_id: str) -> str:
    """Stream: the ack messages to one process that no listener heard (`a`: the channel
    message), kept for the ack timeout and read after the process (re)subscribes (ours)."""
    return f"acks:{node_id}:record"


# Set: the processes that have sockets in a `node_sockets` index (ours, for the sweeper).
SOCKET_NODES = "socket_nodes"


# Sorted set: examinees DISCONNECTED (every socket gone), scored by when (epoch ms), as JSON
# `[planId, examineeId, groupId]`; one left there `lost_after_seconds` becomes LOST (ours).
DISCONNECTED_EXAMINEES = "examinees_disconnected"


# The plan's queues, created by `prepare` (seed 000 "큐 서버 생성"; seed 002's 답안/미디어/로그 큐).
PLAN_STREAM_KINDS = ("answers", "media", "logs")
PERSISTER_GROUP = "persisters"


def plan_stream(plan_id: str, kind: str) -> str:
    if kind not in PLAN_STREAM_KINDS:
        raise ValueError(f"unknown stream kind {kind!r}")
    return f"exam_queue:{plan_id}:{kind}"


# Cross-plan streams named by the seeds. Every socket-server process reads the two broadcast
# streams in full (XREAD, no group), so an event reaches sockets on every process.
EXAM_END_STREAM = "queue:exam_end"  # seed 001 §3.2
STATUS_STREAM = "status_queue"  # seed 004 §10.3: socket server → state manager
SOCKET_STREAM = "socket_queue"  # seed 004 §10.3: state manager (and stage timers) → sockets
STATE_MANAGER_GROUP = "state_managers"  # the consumer group on status_queue
# Trimming bounds for the cross-plan streams (XADD MAXLEN ~): far above any backlog a live
# system holds, so only a stream nobody reads is ever trimmed.
STREAM_MAXLEN = 100_000


# Sign-in attempts (ours; access/throttle.py). An account is `candidate:<id>`,
# `supervisor:<id>` or, for key login, `key:<address>`, and its keys name its plan; a client
# address's keys span plans, so a made-up plan id per request is no fresh window. No hash tags:
# one throttle call touches both, which a Redis Cluster would need in one slot.


def login_failures(plan_id: str, account: str) -> str:
    """Sorted set: the account's failed sign-ins of the last minute, scored by epoch ms."""
    return f"login_failures:{plan_id}:{account}"


def login_address_failures(address: str) -> str:
    """Sorted set: one client address's failed sign-ins of the last minute, any plan."""
    return f"login_address_failures:{address}"


def login_open(plan_id: str, account: str) -> str:
    """Sorted set: the account's sign-in attempts being checked now, scored by epoch ms."""
    return f"login_open:{plan_id}:{account}"


def login_address_open(address: str) -> str:
    """Sorted set: one client address's sign-in attempts being checked now, any plan."""
    return f"login_address_open:{address}"


def login_account(plan_id: str, account: str) -> str:
    """Hash: fails (in a row), lastFail and lockedUntil (epoch ms) of one account."""
    return f"login_account:{plan_id}:{account}"


def login_lockouts(plan_id: str) -> str:
    """Sorted set: the plan's locked-out accounts, scored by when the lockout ends (epoch ms)."""
    return f"login_lockouts:{plan_id}"


# Pub/sub: a revocation just committed, so every process refuses its sessions at once (ours;
# SQLite holds the record, and each process reloads it too, for a message that was lost).
REVOCATIONS_CHANNEL = "session_revocations"
