"""Make failed and interrupted runs honest: Keras 3 calls no callback hook when an exception leaves fit().

What is caught, for a LiveMonitor whose fit() began and did not reach on_train_end:
- an exception nobody catches, in the main thread (`sys.excepthook`) or in another thread (`threading.excepthook`):
  status `failed` with the reason "ValueError: ...", or `interrupted` for KeyboardInterrupt, for the fits running in
  that thread only (a model training in another thread keeps its run);
- the interpreter exiting during fit() (`atexit`, e.g. `sys.exit()` from a callback): `failed`;
- an exception that a caller catches (a notebook cell, try/except, pytest): the system thread sees within a few
  seconds that the thread running fit() no longer has the fit() frame on its stack; the run reads `interrupted` when
  a SIGINT (Ctrl-C) arrived during fit(), else the reason is taken from `sys.last_value` when the interactive shell
  recorded one, or from the exception itself while the caller still holds it (`caught_exception`).
Not caught: kill -9 and power loss. Readers show those runs as `stale` once the heartbeat stops.
"""

from __future__ import annotations

import atexit
import gc
import re
import signal
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

# Each watched callback -> the id of the thread running its fit(): a crash ends only the fits of the crashed thread.
_active: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_installed = False
_install_lock = threading.Lock()
_last_sigint = float("-inf")  # time.monotonic() of the last SIGINT seen by our handler
EMBEDDED_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit): ")


def describe(exc: BaseException | None) -> str:
    """The reason text for status.json: "ValueError: message", truncated."""
    if exc is None:
        return "unknown error"
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Frameworks wrap the original error in a long message (TensorFlow: "Graph execution error: ... OSError: ...
    # Traceback ..."): keep the first line and the embedded error, which says what went wrong.
    cause = next((line for line in lines[1:] if EMBEDDED_ERROR.match(line)), None)
    if cause is not None:
        text = f"{lines[0]} ... {cause}"
    return text[:500]


def register(callback: Any, thread_id: int) -> None:
    """Watch `callback` (an object with `_abort(exc_or_None, message)`), whose fit() runs in thread `thread_id`, until
    `unregister`; hooks install once."""
    _install()
    _active[callback] = thread_id


def unregister(callback: Any) -> None:
    """Stop watching `callback`; Python's own SIGINT handler comes back once nothing is watched."""
    _active.pop(callback, None)
    # Only the main thread may set signal handlers.
    on_main_thread = threading.current_thread() is threading.main_thread()
    if not _active and on_main_thread and signal.getsignal(signal.SIGINT) is _note_sigint:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _note_sigint(signum: int, frame: types.FrameType | None) -> None:
    global _last_sigint
    _last_sigint = time.monotonic()
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as Python's own handler does


def watch_sigint() -> None:
    """Remember when Ctrl-C arrives, so that a KeyboardInterrupt caught by the caller still reads `interrupted`.

    Only Python's default handler is wrapped (a user's own SIGINT handler is left alone), and only from the main
    thread, where signal handlers can be set.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _note_sigint)


def sigint_since(started: float) -> bool:
    """True when a SIGINT arrived after `started` (a time.monotonic() value)."""
    return _last_sigint >= started


def _abort_all(exc: BaseException | None, message: str | None = None, *, thread_id: int | None = None) -> None:
    """End the watched fits: those running in thread `thread_id`, or all of them (the process exits) when None."""
    for callback, fit_thread in list(_active.items()):
        if thread_id is not None and fit_thread != thread_id:
            continue
        try:
            callback._abort(exc, message)
        except Exception:
            pass


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        previous_hook: Callable[..., Any] = sys.excepthook
        previous_thread_hook: Callable[..., Any] = threading.excepthook

        # An uncaught exception ends its own thread only: fits training in other threads go on (and atexit ends
        # whatever still runs when the process itself exits).
        def excepthook(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
            _abort_all(exc, thread_id=threading.main_thread().ident)
            previous_hook(exc_type, exc, tb)

        def thread_excepthook(args: threading.ExceptHookArgs) -> None:
            thread = args.thread
            _abort_all(args.exc_value, thread_id=thread.ident if thread is not None else threading.get_ident())
            previous_thread_hook(args)

        sys.excepthook = excepthook
        threading.excepthook = thread_excepthook
        atexit.register(_abort_all, None, "the process exited while fit() was running")


def fit_frame() -> tuple[int, types.FrameType | None]:
    """The current thread's id and the innermost enclosing `fit` frame (None when the hooks are called by hand)."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "fit" and "callbacks" in code.co_varnames:
            return threading.get_ident(), frame
        frame = frame.f_back
    return threading.get_ident(), None


def frame_alive(thread_id: int, target: types.FrameType) -> bool:
    """True while `target` is still on the stack of thread `thread_id`."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


def caught_exception(thread_id: int, fit: types.FrameType, max_depth: int = 20) -> BaseException | None:
    """The exception that left the `fit` frame, found while the caller that caught it still holds it, else None.

    Its traceback runs through the outermost frame that the exception unwound (fit() or the wrapper around it, no
    longer on the stack of thread `thread_id`; Keras filters its own frames out of the traceback it re-raises, but not
    that wrapper) and begins at the frame that caught it. Exceptions raised and handled inside fit() do not reach that
    outermost frame. The search walks the heap (a fraction of a second), once, after fit() ended without
    on_train_end.
    """
    alive = set()
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        alive.add(id(frame))
        frame = frame.f_back
    outermost = frame = fit
    while frame is not None and id(frame) not in alive:
        outermost, frame = frame, frame.f_back
    del frame
    pending = [ref for ref in gc.get_referrers(outermost) if isinstance(ref, types.TracebackType)]
    seen: set[int] = set()
    found: list[BaseException] = []
    for _ in range(max_depth):
        if not pending:
            break
        referrers = gc.get_referrers(*pending)
        found += [ref for ref in referrers if isinstance(ref, BaseException) and ref.__traceback__ is not None]
        seen.update(id(tb) for tb in pending)
        pending = [ref for ref in referrers if isinstance(ref, types.TracebackType) and id(ref) not in seen]
    # The one caught by a frame still running (the caller), before one left over in a cycle from an earlier catch.
    found.sort(key=lambda exc: id(exc.__traceback__.tb_frame) not in alive)
    return found[0] if found else None


def last_shell_error() -> BaseException | None:
    """The exception the interactive shell (python -i, IPython/Jupyter) last reported, if any."""
    return getattr(sys, "last_value", None)
