import pytest

from stellara.routing.feedback import FeedbackBoard


def test_feedback_mean_of_booleans_is_the_share_of_true():
    board = FeedbackBoard()
    for value in (True, True, False, True):
        board.record("a/gpt-4o", "thumbs_up", value)
    assert board.mean("a/gpt-4o", "thumbs_up") == (4, 0.75)


def test_feedback_is_kept_per_target_and_metric():
    board = FeedbackBoard()
    board.record("a/gpt-4o", "rating", 4.0)
    board.record("a/gpt-4o", "rating", 2.0)
    board.record("b/claude", "rating", 5.0)
    board.record("a/gpt-4o", "solved", 1.0)
    assert board.mean("a/gpt-4o", "rating") == (2, 3.0)
    assert board.mean("b/claude", "rating") == (1, 5.0)
    assert board.mean("a/gpt-4o", "solved") == (1, 1.0)
    assert board.mean("b/claude", "solved") is None
    assert board.mean("c/gemini", "rating") is None


def test_feedback_load_replaces_the_tally_and_records_add_to_it():
    board = FeedbackBoard()
    board.record("a/gpt-4o", "rating", 1.0)
    board.load("a/gpt-4o", "rating", 40, 160.0)
    assert board.mean("a/gpt-4o", "rating") == (40, 4.0)
    board.record("a/gpt-4o", "rating", 5.0)
    assert board.mean("a/gpt-4o", "rating") == (41, 165.0 / 41)


def test_feedback_load_of_nothing_clears_and_a_negative_count_is_refused():
    board = FeedbackBoard()
    board.load("a/gpt-4o", "rating", 3, 9.0)
    board.load("a/gpt-4o", "rating", 0, 0.0)
    assert board.mean("a/gpt-4o", "rating") is None
    with pytest.raises(ValueError, match="cannot be negative"):
        board.load("a/gpt-4o", "rating", -1, 0.0)
