"""Ctrl-C during a search: the first press stops gracefully, the second stops at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def graceful_sigint(request_stop: Callable[[], None], running: Callable[[], int]) -> Iterator[None]:
    """While inside, a first SIGINT calls ``request_stop`` and a second raises KeyboardInterrupt.

    ``running`` tells how many evaluations are still running, for the message. Only the main thread
    can handle signals, and a handler someone else installed (e.g. a notebook's or a server's) is left
    alone: then Ctrl-C behaves as it did before.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    presses = 0

    def handle(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            raise KeyboardInterrupt
        request_stop()
        count = running()
        waiting = f"waiting for the {count} running trial(s) to finish; " if count else ""
        print(f"\nstopping: {waiting}press Ctrl-C again to stop at once", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
