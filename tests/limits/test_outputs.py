from __future__ import annotations

from stellara.limits import OutputHistory


def test_outputs_unknown_pair_expects_nothing() -> None:
    assert OutputHistory().expected("alice", "m") is None


def test_outputs_first_answer_is_the_expectation() -> None:
    history = OutputHistory()
    history.observe("alice", "m", 37)
    assert history.expected("alice", "m") == 37
    assert history.expected("alice", "other") is None
    assert history.expected("bob", "m") is None


def test_outputs_follow_recent_answers_with_a_moving_average() -> None:
    history = OutputHistory()
    history.observe("alice", "m", 100)
    history.observe("alice", "m", 200)
    assert history.expected("alice", "m") == 130  # 100 + 0.3 * (200 - 100)
    for _ in range(20):
        history.observe("alice", "m", 10)
    assert history.expected("alice", "m") == 10  # old answers fade


def test_outputs_keep_only_the_most_recently_settled_pairs() -> None:
    history = OutputHistory(max_tracked=2)
    history.observe("alice", "m", 1)
    history.observe("bob", "m", 2)
    history.observe("alice", "m", 1)  # alice settled again: bob is now the oldest
    history.observe("carol", "m", 3)
    assert history.expected("bob", "m") is None
    assert history.expected("alice", "m") == 1
    assert history.expected("carol", "m") == 3
