"""Pure topology logic: topic matching, queue arguments, retry delays."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core.bus.topology import QueueSpec, Topology, topic_matches, worker_runs
from edgeback_core.errors import ConfigError
from edgeback_core.ids import BackupHostId
from edgeback_core.settings import DEAD_LETTER_STRATEGIES, dead_letter_strategy

words = st.lists(st.sampled_from(["run", "job", "event", "a", "b"]), min_size=1, max_size=5)
pattern_words = st.lists(
    st.sampled_from(["run", "job", "event", "a", "*", "#"]), min_size=1, max_size=5
)


def reference(pattern: list[str], key: list[str]) -> bool:
    """The same rules as a regular expression over ``"." + key``, one group per word."""
    tokens = {"*": r"\.[^.]+", "#": r"(?:\.[^.]+)*"}
    regex = "".join(tokens.get(word, r"\." + re.escape(word)) for word in pattern)
    return re.fullmatch(regex, "." + ".".join(key)) is not None


@given(pattern_words, words)
def test_topic_matching_agrees_with_regex(pattern: list[str], key: list[str]) -> None:
    assert topic_matches(".".join(pattern), ".".join(key)) == reference(pattern, key)


@given(words)
def test_hash_matches_all_and_key_matches_itself(key: list[str]) -> None:
    joined = ".".join(key)
    assert topic_matches("#", joined)
    assert topic_matches(joined, joined)
    assert topic_matches(".".join("*" for _ in key), joined)
    assert not topic_matches(".".join("*" for _ in key) + ".*", joined)


@given(st.lists(st.floats(0.01, 100), min_size=1, max_size=4), st.integers(0, 50))
def test_retry_delay_repeats_the_last(delays: list[float], done: int) -> None:
    spec = QueueSpec(name="s.q", exchange="events", bindings=("#",), retry_delays=tuple(delays))
    assert spec.retry_delay(done) == delays[min(done, len(delays) - 1)]


def test_queue_names_and_arguments_carry_the_prefix() -> None:
    top = Topology(prefix="t-1.")
    spec = worker_runs(BackupHostId("h7"))
    assert top.queue(spec) == "t-1.worker.runs.h7"
    assert top.dlq(spec) == "t-1.worker.runs.h7.dlq"
    args = top.queue_arguments(spec)
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-exchange"] == ""  # the default exchange, by the DLQ's name
    assert args["x-dead-letter-routing-key"] == "t-1.worker.runs.h7.dlq"
    assert args["x-overflow"] == "reject-publish"
    assert set(top.retry_queues(spec).values()) == {
        "t-1.worker.runs.h7.retry.1000ms",
        "t-1.worker.runs.h7.retry.5000ms",
        "t-1.worker.runs.h7.retry.30000ms",
    }
    retry = top.retry_queue_arguments(spec, 5.0)
    assert retry == {
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "t-1.worker.runs.h7",
    }
    assert spec.bindings == ("run.h7",)


@pytest.mark.parametrize("host", ["", "a.b", "x*", "#"])
def test_worker_queue_rejects_hosts_that_break_routing(host: str) -> None:
    with pytest.raises(ValueError, match="host id"):
        worker_runs(BackupHostId(host))


def test_work_queues_dead_letter_at_least_once_unless_the_environment_says_otherwise() -> None:
    spec = worker_runs(BackupHostId("h7"))
    assert dead_letter_strategy({}) == "at-least-once"  # production: nothing set
    assert dead_letter_strategy({"EDGEBACK_BUS_DEAD_LETTER_STRATEGY": "at-most-once"}) == (
        "at-most-once"  # the dev and test broker (deploy/dev-stack.sh env)
    )
    with pytest.raises(ConfigError, match="EDGEBACK_BUS_DEAD_LETTER_STRATEGY"):
        dead_letter_strategy({"EDGEBACK_BUS_DEAD_LETTER_STRATEGY": "exactly-once"})
    for strategy in DEAD_LETTER_STRATEGIES:
        top = Topology(prefix="t-1.", dead_letter_strategy=strategy)
        assert top.queue_arguments(spec)["x-dead-letter-strategy"] == strategy
