"""The executors' shared stop-signal handling (runner.orchestrate.states.stop_signals_to)."""

from __future__ import annotations

import signal
import threading

import pytest

from runner.orchestrate.local import _Stop
from runner.orchestrate.states import stop_signals_to

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def handlers() -> dict:
    return {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}


def test_the_handler_takes_sigint_and_sigterm_only_inside_the_block():
    before = handlers()
    got = []

    def handler(signum, frame):
        got.append(signum)

    with stop_signals_to(handler):
        assert all(h is handler for h in handlers().values())
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert got == [signal.SIGTERM, signal.SIGINT]
    assert handlers() == before


def test_the_previous_handlers_come_back_when_the_block_raises():
    before = handlers()
    stop = _Stop(None)
    with pytest.raises(KeyboardInterrupt), stop_signals_to(stop.on_signal):
        signal.raise_signal(signal.SIGTERM)   # first: checkpoint and stop
        assert stop.signal == "SIGTERM" and stop()
        signal.raise_signal(signal.SIGINT)    # second: stop now
    assert stop.signal == "SIGTERM"
    assert handlers() == before


def test_outside_the_main_thread_the_handlers_stay_as_they_are():
    before = handlers()
    seen = []

    def in_thread():
        with stop_signals_to(lambda signum, frame: None):
            seen.append(handlers())

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]
    assert handlers() == before
