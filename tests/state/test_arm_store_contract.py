"""The `ArmStore` contract, against memory and Redis: adaptive experiments' reward sums."""

from __future__ import annotations

import pytest

from stellara.state.base import ArmSums
from tests.state.conftest import Harness


async def test_arm_sums_count_each_reward_per_variant(harness: Harness) -> None:
    arms = harness.backend.arms
    for reward in (1.0, 0.0, 1.0):
        await arms.add("cheap-vs-smart", "control", reward)
    await arms.add("cheap-vs-smart", "mini:v2", 0.5)  # a colon in a name is kept whole
    await arms.add("other", "control", 3.0)
    sums = await arms.read("cheap-vs-smart")
    assert sums == {"control": ArmSums(3.0, 2.0, 2.0), "mini:v2": ArmSums(1.0, 0.5, 0.25)}
    assert await arms.read("other") == {"control": ArmSums(1.0, 3.0, 9.0)}


async def test_arm_sums_cleared_are_gone_and_others_stay(harness: Harness) -> None:
    arms = harness.backend.arms
    await arms.add("a", "control", 1.0)
    await arms.add("b", "control", 2.0)
    await arms.clear("a")
    assert await arms.read("a") == {}
    assert (await arms.read("b"))["control"].total == pytest.approx(2.0)
