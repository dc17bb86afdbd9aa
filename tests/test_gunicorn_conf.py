"""The serving recipe's worker hook (``example_site/gunicorn.conf.py``): a worker freezes its start-up heap
and collects young objects less often, so 2,000 waiting sockets do not bring a full collection every few
seconds (issue 20; measured in benchmarks/RESULTS.md)."""

from __future__ import annotations

import gc
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "example_site" / "gunicorn.conf.py"


@pytest.fixture
def gc_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GEVENT_TRACK_GREENLET_TREE", "false")  # the conf sets it for the process it runs in
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_worker_freezes_its_start_up_heap_and_raises_only_the_young_threshold(gc_state: None) -> None:
    conf = runpy.run_path(str(CONF))
    before = gc.get_threshold()
    survivor = [object()]  # allocated before the hook: start-up state of the worker
    conf["post_worker_init"](worker=None)
    assert gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())  # frozen: no collection walks it
    assert gc.get_threshold() == (conf["GC_YOUNG_THRESHOLD"], before[1], before[2])
    assert conf["GC_YOUNG_THRESHOLD"] > before[0]
    assert conf["worker_class"] == "gevent"
