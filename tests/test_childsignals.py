"""Ctrl-C around the driver's Dask client calls (``replay --dask``): held back until the call
ends, a second one at once, left alone where Ctrl-C is ignored."""

from __future__ import annotations

import os
import signal

import pytest

from nwwatch.service.childsignals import ctrl_c_after_the_call


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # delivered to this (the main) thread at once


def test_a_ctrl_c_during_the_call_is_raised_when_the_call_ends():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_after_the_call():
            ctrl_c()
            done.append("the call went on")
    assert done == ["the call went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_during_the_call_acts_at_once():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_after_the_call():
            ctrl_c()
            ctrl_c()
            done.append("not reached")
    assert done == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_held_ctrl_c_wins_over_the_calls_own_error():
    with pytest.raises(KeyboardInterrupt) as caught:
        with ctrl_c_after_the_call():
            ctrl_c()
            raise ValueError("the task failed")
    assert isinstance(caught.value.__context__, ValueError)


def test_where_ctrl_c_is_ignored_it_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ctrl_c_after_the_call():
            ctrl_c()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_handler_of_the_callers_own_gets_the_held_ctrl_c():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with ctrl_c_after_the_call():
            ctrl_c()
            assert seen == []
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_sigterm_taken_as_an_interrupt_is_held_like_a_ctrl_c():
    # `replay --dask`: SIGTERM raised at once inside a client call as Ctrl-C was before
    from nwwatch.options import Terminated, sigterm_as_interrupt

    done = []
    with sigterm_as_interrupt():
        with pytest.raises(Terminated):
            with ctrl_c_after_the_call():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the call went on")
    assert done == ["the call went on"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
