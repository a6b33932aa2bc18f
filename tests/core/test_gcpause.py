"""core.gcpause: the collector is paused inside, nested and overlapping pauses count, and it is
always restored (as it was) when the last pause ends, even on an error."""

import gc
import threading

import pytest

from core.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_paused_inside_and_restored_after():
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_restore_only_at_the_outermost():
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_when_the_block_raises():
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_threads_restore_when_the_last_ends():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with gc_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with gc_paused():
        second_in.set()
        first_out.wait(5)
        assert not gc.isenabled()  # the other thread's pause ended; this one still holds it
    thread.join(5)
    assert gc.isenabled()
