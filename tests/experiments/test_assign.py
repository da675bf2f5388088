"""Sticky assignment: the same place for a unit on every process, shares kept, slices moved
only as far as they must."""

from __future__ import annotations

import os
import subprocess
import sys

from stellara.experiments.assign import slice_ends, unit_place, variant_at


def test_unit_place_is_the_same_in_another_process_with_another_hash_seed() -> None:
    units = [f"user-{i}" for i in range(5)]
    here = [unit_place("exp", unit) for unit in units]
    code = (
        "from stellara.experiments.assign import unit_place;"
        f"print([unit_place('exp', u) for u in {units!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == repr(here)


def test_variant_shares_hold_within_three_points_over_ten_thousand_users() -> None:
    ends = slice_ends([50, 30, 20])
    counts = [0, 0, 0]
    for i in range(10_000):
        counts[variant_at(ends, unit_place("cheap-vs-smart", f"user-{i}"))] += 1
    assert [abs(c / 10_000 - s) <= 0.03 for c, s in zip(counts, (0.5, 0.3, 0.2), strict=True)] == [
        True,
        True,
        True,
    ]


def test_unit_places_of_two_experiments_are_independent() -> None:
    users = [f"user-{i}" for i in range(4_000)]
    in_first = {u for u in users if unit_place("a", u) < 0.5}
    both = sum(1 for u in in_first if unit_place("b", u) < 0.5)
    assert abs(both / len(in_first) - 0.5) < 0.05


def test_zero_share_slices_hold_no_one_and_the_last_slice_ends_at_one() -> None:
    ends = slice_ends([0, 70, 0, 30])
    assert ends[-1] == 1.0
    assert {variant_at(ends, p / 1000) for p in range(1000)} == {1, 3}


def test_resized_slices_move_only_the_units_near_a_moved_border() -> None:
    users = [f"user-{i}" for i in range(10_000)]
    before = slice_ends([50, 50])
    after = slice_ends([60, 40])
    moved = [
        u
        for u in users
        if variant_at(before, unit_place("e", u)) != variant_at(after, unit_place("e", u))
    ]
    assert abs(len(moved) / len(users) - 0.10) < 0.02
    assert all(variant_at(after, unit_place("e", u)) == 0 for u in moved)
