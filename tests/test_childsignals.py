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


def _blocked(status: str) -> bool:
    """SIGINT in the SigBlk mask of a /proc/*/status text."""
    mask = int(next(line for line in status.splitlines() if line.startswith("SigBlk:"))
               .split()[1], 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_the_workers_start_with_ctrl_c_blocked_and_the_driver_gets_its_own_back():
    # What the workers inherit: the block's mask, in a thread started in it and through
    # fork and exec. What the driver keeps: its own mask back, also after an error in the
    # block, and a Ctrl-C sent meanwhile raised once the block ends.
    import subprocess
    import threading

    from nwwatch.service.childsignals import children_ignore_ctrl_c

    seen = {}

    def thread_mask() -> None:
        seen["thread"] = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with pytest.raises(KeyboardInterrupt) as caught:
        with children_ignore_ctrl_c():
            worker = threading.Thread(target=thread_mask)
            worker.start()
            worker.join()
            seen["exec"] = _blocked(subprocess.run(["cat", "/proc/self/status"],
                                                   capture_output=True, text=True).stdout)
            ctrl_c()
            raise ValueError("the cluster failed to start")
    assert seen == {"thread": True, "exec": True}
    assert isinstance(caught.value.__context__, ValueError)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    assert signal.SIGINT not in before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_taken_as_an_interrupt_is_held_like_a_ctrl_c():
    # `replay --dask`: SIGTERM raised at once inside a client call as Ctrl-C was before
    from nwwatch.stopsignals import Terminated, sigterm_as_interrupt

    done = []
    with sigterm_as_interrupt():
        with pytest.raises(Terminated):
            with ctrl_c_after_the_call():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the call went on")
    assert done == ["the call went on"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_whose_exception_a_callback_dropped_still_stops_the_command(capsys):
    """SIGTERM's exception raised inside a callback that Python runs with exceptions ignored
    (distributed's garbage-collector callback, a ``__del__``) is printed and dropped: the
    command must stop all the same, at its next check or at the end of the block. Was:
    `replay --dask` went on to the end and exited 3 instead of 143."""
    from nwwatch import stopsignals as options

    class DropsIt:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs within __del__
            for _ in range(100):  # bytecodes for the handler to run at
                pass

    with pytest.raises(options.Terminated):
        with options.sigterm_as_interrupt():
            DropsIt()  # __del__ runs at once; its Terminated is dropped, without a traceback
            with pytest.raises(options.Terminated):
                options.raise_lost_interrupt()  # where replay checks between batches
    options.raise_lost_interrupt()  # outside the block nothing stops
    assert "Traceback" not in capsys.readouterr().err


def test_a_signal_while_the_handlers_are_put_back_leaves_none_of_the_holders_installed(
        monkeypatch):
    """A second stop signal that lands while the block's end puts the caller's handlers back
    (a SIGTERM held, then a hang-up): the handlers are all put back before either acts.
    Before, the hang-up acted halfway and SIGTERM and SIGHUP kept the holder, which swallows
    the next one."""
    from nwwatch import stopsignals as options

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop(signum)

    real_signal = signal.signal

    class HangsUpWhileRestoring:  # the signal module, but a hang-up after the first restore
        def __getattr__(self, name):
            return getattr(signal, name)

        def signal(self, signum, handler):
            previous = real_signal(signum, handler)
            if handler is stop and signum == signal.SIGINT and not hung_up:
                hung_up.append(True)
                os.kill(os.getpid(), signal.SIGHUP)
            return previous

    hung_up: list[bool] = []
    before = {s: real_signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        monkeypatch.setattr(options, "signal", HangsUpWhileRestoring())
        with pytest.raises(Stop):
            with ctrl_c_after_the_call():
                os.kill(os.getpid(), signal.SIGTERM)  # held
        monkeypatch.undo()
        assert hung_up
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            assert signal.getsignal(signum) is stop, signal.Signals(signum).name
    finally:
        for signum, handler in before.items():
            real_signal(signum, handler)


def test_a_ctrl_c_another_thread_takes_while_the_handlers_are_put_back_leaves_none_holding(
        monkeypatch):
    """With other threads running (ONNX Runtime's, Dask's), a Ctrl-C that arrives while the
    block's end puts the handlers back is taken by one of them, and Python runs SIGINT's
    handler (put back already) in the main thread between two calls. Before, its exception
    cut the restore short: SIGTERM and SIGHUP kept the holder and two SIGTERMs were
    swallowed."""
    import threading
    import time

    from nwwatch import stopsignals as options
    from nwwatch.stopsignals import Terminated, sigterm_as_interrupt

    done = threading.Event()
    threading.Thread(target=done.wait, args=(30,), daemon=True).start()
    real_signal = signal.signal
    fired: list[bool] = []

    class CtrlCJustAfterSigint:  # the signal module, with a Ctrl-C after SIGINT is put back
        def __getattr__(self, name):
            return getattr(signal, name)

        def signal(self, signum, handler):
            previous = real_signal(signum, handler)
            if signum == signal.SIGINT and handler is signal.default_int_handler \
                    and not fired:
                fired.append(True)
                ctrl_c()  # blocked in this thread: the other one takes it
                time.sleep(0.05)
            return previous

    try:
        with sigterm_as_interrupt(hangup=True):
            mine = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
            monkeypatch.setattr(options, "signal", CtrlCJustAfterSigint())
            with pytest.raises(KeyboardInterrupt):
                with ctrl_c_after_the_call():
                    pass
            monkeypatch.undo()
            assert fired
            assert {s: signal.getsignal(s) for s in mine} == mine
            with pytest.raises(Terminated):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
    finally:
        done.set()
