"""The service process's interpreter settings."""

from __future__ import annotations

import gc
import sys

from tripline.service import runtime


def test_tuning_sets_the_switch_interval_and_freezes_what_start_up_made() -> None:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    try:
        survivor = [[n] for n in range(10)]  # "made at start-up" (lists: the collector tracks them)
        runtime.tune_after_start()
        assert sys.getswitchinterval() == runtime.SWITCH_INTERVAL_SECONDS
        assert gc.get_threshold() == runtime.GC_THRESHOLDS
        assert gc.get_freeze_count() >= len(survivor)
        watched = {id(o) for o in gc.get_objects()}  # the generations a collection walks
        assert all(gc.is_tracked(o) and id(o) not in watched for o in survivor)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
