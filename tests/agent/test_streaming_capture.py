"""CUDA graph capture is safe from Python's cyclic garbage collector (agent.streaming.graph.capture_graph)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from agent.streaming.graph import capture_graph, collection_paused


class SelfReferencing:
    """Garbage only the cyclic collector frees (reference counting never reaches zero)."""

    def __init__(self, payload: object = None):
        self.payload, self.me = payload, self


def test_collection_paused_collects_first_then_stops_automatic_collection():
    dead = SelfReferencing()
    alive_check = weakref.ref(dead)
    del dead
    assert gc.isenabled()
    with collection_paused():
        assert alive_check() is None  # collected on entry, before any capture begins
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collection_paused_leaves_a_callers_disabled_collector_off_even_on_error():
    gc.disable()
    try:
        with pytest.raises(RuntimeError), collection_paused():
            raise RuntimeError("capture failed")
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("capture failed")
    assert gc.isenabled()


@pytest.mark.gpu
def test_a_dead_graph_in_a_cycle_does_not_break_the_next_capture():
    """The GPU suite's failure of session 17: a graph of an earlier, dropped agent was freed by an
    automatic collection during a later capture. Here that collection is forced to fall inside the
    capture: the body makes cyclic garbage only while the stream captures."""
    old, _ = capture_graph(lambda: torch.ones(4, device="cuda") * 2)
    gc.disable()  # the dead graph must survive until the capture starts
    SelfReferencing(old)
    del old
    gc.enable()
    source = torch.arange(4.0, device="cuda")

    def body() -> torch.Tensor:
        if torch.cuda.is_current_stream_capturing():
            for _ in range(10 * gc.get_threshold()[0]):  # far past the youngest generation's threshold
                SelfReferencing()
        return source * 3

    graph, out = capture_graph(body)
    source.copy_(torch.full((4,), 5.0, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert out.tolist() == [15.0] * 4
