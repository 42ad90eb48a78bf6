"""Property: whatever the network does, once it heals the server holds the client's answers.

One device here; several devices of one candidate are test_devices_stateful.py.

A hypothesis state machine drives one engine against the in-test server model through edits,
dropped, duplicated, reordered and corrupted requests and responses, timeouts, offline spells,
crashes (the engine rebuilt from the same storage) and restores. Invariants hold after every
step; at the end the network heals and the server must hold exactly the client's final state.
"""

from __future__ import annotations

import random
from typing import Any

from examsync_fakes import CANDIDATE, EXAM, PLAN, Clock, FakeServer
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from examsync.engine import Engine, EngineConfig, OutboxState
from examsync.exceptions import TransportError
from examsync.storage import MemoryStorage

QUIZZES = ["Q1", "Q2", "Q3"]
VALUES = ["", "a", "b", "정답"]
CONFIG = EngineConfig(
    plan_id=PLAN, exam_code=EXAM, candidate_id=CANDIDATE, max_batch=2, request_timeout=10
)


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.server = FakeServer()
        self.storage = MemoryStorage()
        self.rng = random.Random(0)
        self.generation = 0  # bumped by a crash: the old process's responses go nowhere
        self.engine = Engine(CONFIG, self.storage, self.rng.random)
        self.requests: list[tuple[int, bytes]] = []  # (batch id, body) on their way
        self.responses: list[tuple[int, int, int, Any]] = []  # (generation, batch, status, body)
        self.typed: dict[str, str] = {}  # what the candidate last typed, per question
        self.versions: dict[str, int] = {}

    # --- the candidate ----------------------------------------------------------------------------

    @rule(quiz=st.sampled_from(QUIZZES), value=st.sampled_from(VALUES))
    def edit(self, quiz: str, value: str) -> None:
        self.engine.set_answer(quiz, value, self.clock.now)
        self.typed[quiz] = value

    # --- the driver and the network ---------------------------------------------------------------

    @rule()
    def send(self) -> None:
        busy = self.engine.state is OutboxState.SENDING
        request = self.engine.next_request(self.clock.now)
        assert not (busy and request), "a second batch while one is out"
        if request is not None:
            self.requests.append((request.batch_id, request.body))

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def server_receives(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.requests) - 1))
        batch_id, body = self.requests.pop(index)  # any order: requests overtake each other
        status, answer = self.server.save(body)
        self.responses.append((self.generation, batch_id, status, answer))

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def request_lost(self, data: st.DataObject) -> None:
        self.requests.pop(data.draw(st.integers(0, len(self.requests) - 1)))

    @precondition(lambda self: self.responses)
    @rule(data=st.data(), duplicate=st.booleans())
    def client_receives(self, data: st.DataObject, duplicate: bool) -> None:
        index = data.draw(st.integers(0, len(self.responses) - 1))
        generation, batch_id, status, body = self.responses[index]
        if not duplicate:
            self.responses.pop(index)
        if generation == self.generation:
            self.engine.receive_save_response(batch_id, status, body, self.clock.now)

    @precondition(lambda self: self.responses)
    @rule(data=st.data(), how=st.sampled_from(["garbage", "version", "status"]))
    def client_receives_garbage(self, data: st.DataObject, how: str) -> None:
        index = data.draw(st.integers(0, len(self.responses) - 1))
        generation, batch_id, status, body = self.responses[index]
        if generation != self.generation:
            return
        before = self.storage.load()
        if how == "garbage":
            bad: Any = b'{"results": '
        elif how == "status":
            bad = {
                "results": {q: {"status": "lost", "version": 1} for q in body.get("results", {})},
                "serverTime": "x",
            }
        else:
            bad = {
                **body,
                "results": {
                    q: {**r, "version": r["version"] + 100}
                    for q, r in body.get("results", {}).items()
                },
            }
        self.engine.receive_save_response(batch_id, status, bad, self.clock.now)
        if bad != body:
            assert self.storage.load() == before

    @precondition(lambda self: self.responses)
    @rule(data=st.data())
    def response_lost(self, data: st.DataObject) -> None:
        self.responses.pop(data.draw(st.integers(0, len(self.responses) - 1)))

    @rule(delivered=st.booleans())
    def transport_error(self, delivered: bool) -> None:
        """The driver saw an error for the newest request; it may still reach the server."""
        if not self.requests:
            return
        batch_id, body = self.requests[-1]
        if not delivered:
            self.requests.pop()
        self.engine.send_failed(batch_id, TransportError("reset"), self.clock.now)

    @rule(seconds=st.sampled_from([0.5, 3.0, 11.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.engine.tick(self.clock.advance(seconds))

    @rule()
    def wake_at_deadline(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is not None:
            self.clock.now = max(self.clock.now, deadline)
            self.engine.tick(self.clock.now)

    @rule(online=st.booleans())
    def connectivity(self, online: bool) -> None:
        if online:
            self.engine.connection_restored(self.clock.now)
        else:
            self.engine.connection_lost(self.clock.now)

    @rule()
    def crash(self) -> None:
        self.generation += 1
        self.engine = Engine(CONFIG, self.storage, self.rng.random)

    @rule()
    def restore(self) -> None:
        report = self.engine.receive_restore(self.server.restore(), self.clock.now)
        assert not report.resent and not report.unconfirmed  # this server never loses anything

    # --- what must always hold --------------------------------------------------------------------

    @invariant()
    def the_screen_shows_what_was_typed(self) -> None:
        assert {q: a.value for q, a in self.engine.answers.items()} == self.typed

    @invariant()
    def memory_and_storage_agree(self) -> None:
        snap = self.storage.load()
        assert self.engine.answers == snap.answers
        assert self.engine.outbox == snap.outbox

    @invariant()
    def kept_versions_only_rise(self) -> None:
        # The server assigns them; a device takes the kept one, even below its proposal.
        for quiz, (version, _) in self.server.state().items():
            assert version >= self.versions.get(quiz, 0)
            self.versions[quiz] = version

    @invariant()
    def the_outbox_holds_the_latest_versions(self) -> None:
        for quiz, entry in self.engine.outbox.items():
            answer = self.engine.answers[quiz]
            assert (entry.version, entry.value) == (answer.version, answer.value)

    @invariant()
    def the_server_never_holds_what_the_client_did_not_write(self) -> None:
        for quiz, (version, value) in self.server.state().items():
            local = self.engine.answers[quiz]
            assert version <= local.version
            if version == local.version:
                assert value == local.value

    @invariant()
    def acknowledged_means_stored(self) -> None:
        server = self.server.state()
        for quiz, answer in self.engine.answers.items():
            if quiz not in self.engine.outbox:
                assert server.get(quiz) == (answer.version, answer.value)

    @invariant()
    def never_stalls(self) -> None:
        if self.engine.outbox:
            assert self.engine.state is not OutboxState.IDLE
            if self.engine.state is not OutboxState.READY:
                assert self.engine.next_deadline() is not None

    # --- the network heals ------------------------------------------------------------------------

    def teardown(self) -> None:
        engine = self.engine
        engine.connection_restored(self.clock.now)
        for _ in range(100):
            if not engine.outbox and engine.state is OutboxState.IDLE:
                break
            deadline = engine.next_deadline()
            if deadline is not None and engine.state is not OutboxState.READY:
                self.clock.now = max(self.clock.now, deadline)
                engine.tick(self.clock.now)
            request = engine.next_request(self.clock.now)
            if request is not None:
                status, body = self.server.save(request.body)
                engine.receive_save_response(request.batch_id, status, body, self.clock.now)
        assert not engine.outbox, "the outbox did not drain on a healthy network"
        assert self.server.state() == {q: (a.version, a.value) for q, a in engine.answers.items()}
        assert {q: a.value for q, a in engine.answers.items()} == self.typed


SyncMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestSync = SyncMachine.TestCase
