"""`stellara serve` tunes the garbage collector once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stellara.server.serve import GC_YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    older = gc.get_threshold()[1:]
    tune_garbage_collector()
    assert gc.get_freeze_count() > 1000  # modules, config, routes: never walked again
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older)
    assert gc.isenabled()  # requests still leave cyclic garbage to collect
