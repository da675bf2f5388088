"""Sticky assignment: which variant one unit (a user, a key, a session) gets.

A unit's place in an experiment is a number in [0, 1) hashed from the experiment's id and the
unit: the same on every gateway process and across restarts, different per experiment (so a
user's variants in two experiments are independent). Variants own consecutive slices of [0, 1)
in their config order, sized by their shares; a unit gets the variant whose slice holds its
place. When adaptive allocation resizes the slices, only the units near a moved border change
variant.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

_SPAN = float(1 << 64)


def unit_place(experiment_id: str, unit: str) -> float:
    """`unit`'s place in `experiment_id`, uniform in [0, 1) (BLAKE2b, not Python's `hash`,
    which differs per process)."""
    digest = hashlib.blake2b(unit.encode(), digest_size=8, key=experiment_id.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / _SPAN


def slice_ends(shares: Sequence[float]) -> tuple[float, ...]:
    """Where each variant's slice ends, for `shares` in any unit (percent, fractions); the last
    end is 1 exactly, so every place falls in some slice."""
    total = sum(shares)
    if total <= 0:
        raise ValueError("shares must not all be zero")
    ends = [end / total for end in accumulate(shares)]
    ends[-1] = 1.0
    return tuple(ends)


def variant_at(ends: Sequence[float], place: float) -> int:
    """The index of the slice that holds `place` (zero-share slices hold nothing)."""
    return bisect_right(ends, place)
