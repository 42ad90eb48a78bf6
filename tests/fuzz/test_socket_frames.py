"""Generated and mutated socket frames against a real socket server (`examsync serve`), as a
candidate and as a supervisor: every answer documented, no crash, no hang, and the server
still serves a valid client afterwards (tests/fuzz/README.md)."""

from __future__ import annotations

from .socket_fuzz import fuzz_frames, valid_client_saves
from .target import Target

EXAMPLES = 600  # sockets; ~15 s here. `nox -s fuzz` runs more.


def test_generated_frames_get_documented_answers(socket_target: Target) -> None:
    figures = fuzz_frames(socket_target, EXAMPLES)
    assert not figures.problems, figures.report()
    assert set(figures.examples) == {"candidate", "supervisor"}
    # The generators reach what they are meant to: saves taken and refused, frames refused,
    # resumes from good and bad positions, a socket closed for a frame over the limit.
    reached = (
        "save_ack", "error:invalid_json", "error:invalid_message", "error:unknown_type",
        "error:candidates_only", "error:invalid_position", "resumed", "reload_state",
    )  # fmt: skip
    for kind in reached:
        assert figures.answers[kind] > 0, figures.report()
    assert figures.closes[1009] > 0, figures.report()


def test_the_server_serves_a_valid_client_after_the_fuzzing(socket_target: Target) -> None:
    fuzz_frames(socket_target, 50, seed_value=16)
    assert socket_target.alive()
    after = valid_client_saves(socket_target)
    assert not after.problems, after.problems
    acks = [f for f in after.frames if f["type"] == "save_ack" and f["id"] == "valid"]
    assert acks[0]["results"]["Q001"]["status"] == "accepted", after.frames
