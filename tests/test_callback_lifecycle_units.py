"""How a fit() that Keras leaves without on_train_end is noticed, without training: the reason text (`describe`), the
hooks that end the watched fits (`register`, the except hooks, atexit), the SIGINT note, the fit() frame and whether it
is still on its thread's stack, and the exception a caller caught. Real frames, threads, exceptions and signals; every
hook a test changes is put back."""

from __future__ import annotations

import math
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kerascope.callbacks import _lifecycle as lifecycle

ATEXIT_MESSAGE = "the process exited while fit() was running"


class Watched:
    """What the hooks end: records each `_abort(exc, message)`."""

    def __init__(self) -> None:
        self.aborts: list[tuple[BaseException | None, str | None]] = []

    def _abort(self, exc: BaseException | None, message: str | None = None) -> None:
        self.aborts.append((exc, message))


class Failing(Watched):
    """A watched callback whose `_abort` itself fails."""

    def _abort(self, exc: BaseException | None, message: str | None = None) -> None:
        super()._abort(exc, message)
        raise RuntimeError("abort failed")


def in_thread(target: Callable[[], Any]) -> Any:
    """target() run in a new thread; its result, or what it raised, raised here."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# -- describe ----------------------------------------------------------------------------------------------------------


def test_the_reason_is_the_type_and_the_message():
    assert lifecycle.describe(ValueError("shapes do not match")) == "ValueError: shapes do not match"
    assert lifecycle.describe(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert lifecycle.describe(OSError("  padded: ")) == "OSError:   padded"
    assert lifecycle.describe(OverflowError("too large: X")) == "OverflowError: too large: X"
    assert lifecycle.describe(None) == "unknown error"


def test_a_wrapped_error_is_its_first_line_and_the_embedded_error():
    message = ("Graph execution error:\n\nDetected at node ReadFile defined at (most recent call last):\n"
               "  File \"train.py\", line 3\n"
               "  tensorflow.python.framework.errors_impl.NotFoundError: data.bin; No such file\n"
               "OSError: a later one\n")
    assert lifecycle.describe(RuntimeError(message)) == (
        "RuntimeError: Graph execution error: ... tensorflow.python.framework.errors_impl.NotFoundError: data.bin; "
        "No such file")


@pytest.mark.parametrize("embedded", ["MyException: x", "KeyboardInterrupt: x", "SystemExit: x", "_Private.Error: x"])
def test_embedded_errors_are_named_like_exceptions(embedded):
    assert lifecycle.describe(ValueError(f"wrapped\n{embedded}")) == f"ValueError: wrapped ... {embedded}"


@pytest.mark.parametrize("line", ["Error: no type", "1Error: x", "NotFoundError:x", "see ValueError: x", "Warning: x"])
def test_lines_that_only_look_like_errors_keep_the_whole_text(line):
    assert lifecycle.describe(ValueError(f"wrapped\n{line}")) == f"ValueError: wrapped\n{line}"


def test_the_reason_is_cut_at_500_characters():
    assert lifecycle.describe(ValueError("x" * 600)) == "ValueError: " + "x" * 488
    cause = "OSError: " + "y" * 600
    assert lifecycle.describe(ValueError(f"wrapped\n{cause}")) == ("ValueError: wrapped ... " + cause)[:500]


# -- register / unregister and the hooks -------------------------------------------------------------------------------


@pytest.fixture
def hooks(monkeypatch) -> Iterator[dict[str, list[Any]]]:
    """Hooks installed afresh over recording ones (sys.excepthook, threading.excepthook and atexit.register as they
    were come back afterwards); what reached each recording hook."""
    seen: dict[str, list[Any]] = {"excepthook": [], "thread_excepthook": [], "atexit": []}
    monkeypatch.setattr(lifecycle, "_installed", False)
    monkeypatch.setattr(lifecycle, "_last_sigint", float("-inf"))
    monkeypatch.setattr(lifecycle, "_active", type(lifecycle._active)())
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen["excepthook"].append(args))
    monkeypatch.setattr(threading, "excepthook", lambda args: seen["thread_excepthook"].append(args))
    monkeypatch.setattr(lifecycle.atexit, "register", lambda func, *args: seen["atexit"].append((func, args)))
    handler = signal.getsignal(signal.SIGINT)
    yield seen
    signal.signal(signal.SIGINT, handler)


def test_hooks_install_once_and_atexit_ends_every_watched_fit(hooks):
    main, other = Watched(), Watched()
    lifecycle.register(main, threading.main_thread().ident)
    installed = (sys.excepthook, threading.excepthook)
    lifecycle.register(other, 12345)
    assert (sys.excepthook, threading.excepthook) == installed
    assert len(hooks["atexit"]) == 1
    func, args = hooks["atexit"][0]
    func(*args)
    assert main.aborts == other.aborts == [(None, ATEXIT_MESSAGE)]


def test_an_uncaught_exception_in_the_main_thread_ends_the_fits_of_the_main_thread_only(hooks):
    main, other = Watched(), Watched()
    lifecycle.register(main, threading.main_thread().ident)
    lifecycle.register(other, threading.main_thread().ident + 1)
    try:
        raise ValueError("boom")
    except ValueError as raised:
        error = raised
    sys.excepthook(ValueError, error, error.__traceback__)
    assert (main.aborts, other.aborts) == ([(error, None)], [])
    # the hook it replaced still reports it
    assert hooks["excepthook"] == [(ValueError, error, error.__traceback__)]
    del error


def test_an_uncaught_exception_in_a_thread_ends_that_threads_fits_only(hooks):
    in_worker, in_main = Watched(), Watched()
    lifecycle.register(in_main, threading.main_thread().ident)
    error = ValueError("in the worker")

    def train() -> None:
        lifecycle.register(in_worker, threading.get_ident())
        raise error

    worker = threading.Thread(target=train)
    worker.start()
    worker.join()
    assert (in_worker.aborts, in_main.aborts) == ([(error, None)], [])
    (args,) = hooks["thread_excepthook"]
    assert (args.exc_type, args.exc_value, args.thread) == (ValueError, error, worker)


def test_a_thread_exception_without_its_thread_ends_the_fits_of_the_thread_reporting_it(hooks):
    here, elsewhere = Watched(), Watched()
    lifecycle.register(here, threading.get_ident())
    lifecycle.register(elsewhere, threading.get_ident() + 1)
    error = ValueError("no thread")
    args = threading.ExceptHookArgs((ValueError, error, None, None))
    threading.excepthook(args)
    assert (here.aborts, elsewhere.aborts, hooks["thread_excepthook"]) == ([(error, None)], [], [args])


def test_a_thread_exception_ends_the_fits_of_the_thread_it_names_whoever_reports_it(hooks):
    in_worker, here = Watched(), Watched()
    lifecycle.register(here, threading.get_ident())
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
    lifecycle.register(in_worker, worker.ident)
    error = ValueError("in the worker")
    threading.excepthook(threading.ExceptHookArgs((ValueError, error, None, worker)))
    assert (in_worker.aborts, here.aborts) == ([(error, None)], [])


def test_a_failing_abort_does_not_keep_the_others_from_ending(hooks):
    first, failing, last = Watched(), Failing(), Watched()
    for callback in (first, failing, last):
        lifecycle.register(callback, threading.main_thread().ident)
    error = ValueError("boom")
    sys.excepthook(ValueError, error, None)
    assert first.aborts == failing.aborts == last.aborts == [(error, None)]


def test_an_unregistered_callback_is_no_longer_ended(hooks):
    kept, dropped = Watched(), Watched()
    lifecycle.register(kept, threading.main_thread().ident)
    lifecycle.register(dropped, threading.main_thread().ident)
    lifecycle.unregister(dropped)
    lifecycle.unregister(Watched())  # never registered: nothing happens
    sys.excepthook(ValueError, ValueError("x"), None)
    assert (len(kept.aborts), dropped.aborts) == (1, [])


# -- the SIGINT note ---------------------------------------------------------------------------------------------------


def test_ctrl_c_during_fit_is_noted_and_still_raises_keyboard_interrupt(hooks):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lifecycle.watch_sigint()
    assert signal.getsignal(signal.SIGINT) is lifecycle._note_sigint
    before = lifecycle._last_sigint
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    noted = lifecycle._last_sigint
    assert noted > before
    assert (lifecycle.sigint_since(noted), lifecycle.sigint_since(math.nextafter(noted, math.inf))) == (True, False)
    assert lifecycle.sigint_since(float("-inf")) is True


def test_a_handler_of_the_users_own_is_left_alone(hooks):
    def users_handler(signum: int, frame: types.FrameType | None) -> None:
        pass

    signal.signal(signal.SIGINT, users_handler)
    lifecycle.watch_sigint()
    assert signal.getsignal(signal.SIGINT) is users_handler
    watched = Watched()
    lifecycle.register(watched, threading.get_ident())
    lifecycle.unregister(watched)
    assert signal.getsignal(signal.SIGINT) is users_handler


def test_only_the_main_thread_sets_the_sigint_handler(hooks):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert in_thread(lifecycle.watch_sigint) is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    lifecycle.watch_sigint()
    watched = Watched()
    lifecycle.register(watched, threading.get_ident())
    assert in_thread(lambda: lifecycle.unregister(watched)) is None
    assert signal.getsignal(signal.SIGINT) is lifecycle._note_sigint


def test_pythons_handler_comes_back_once_no_fit_is_watched(hooks):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lifecycle.watch_sigint()
    first, second = Watched(), Watched()
    lifecycle.register(first, threading.get_ident())
    lifecycle.register(second, threading.get_ident())
    lifecycle.unregister(first)
    assert signal.getsignal(signal.SIGINT) is lifecycle._note_sigint
    lifecycle.unregister(second)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- fit_frame and frame_alive ----------------------------------------------------------------------------------------


def fit(x: Any = None, callbacks: Any = None) -> tuple[int, types.FrameType | None]:
    """Keras's Model.fit as the frame search sees it: a function named fit with a `callbacks` variable."""
    return lifecycle.fit_frame()


class Model:
    def fit(self, x: Any = None, callbacks: Any = None) -> tuple[types.FrameType, tuple[int, types.FrameType | None]]:
        return sys._getframe(), named_fit_without_callbacks()


def named_fit_without_callbacks() -> tuple[int, types.FrameType | None]:
    def fit(x: Any = None) -> tuple[int, types.FrameType | None]:
        return other_function_with_callbacks()

    return fit()


def other_function_with_callbacks(callbacks: Any = None) -> tuple[int, types.FrameType | None]:
    return lifecycle.fit_frame()


def test_the_fit_frame_is_the_innermost_fit_with_callbacks_on_the_stack():
    thread, frame = fit()
    assert (thread, frame.f_code) == (threading.get_ident(), fit.__code__)
    outer, (_, found) = Model().fit()
    assert found is outer  # a `fit` without callbacks, or callbacks outside a `fit`, are passed over
    assert lifecycle.fit_frame() == (threading.get_ident(), None)


def test_the_fit_frame_of_a_thread_names_that_thread():
    worker, found, fit_of = in_thread(lambda: (threading.get_ident(), *fit()))
    assert worker == found != threading.get_ident() and fit_of.f_code is fit.__code__


def test_a_frame_is_alive_while_it_is_on_its_threads_stack():
    entered, returned, release = threading.Event(), threading.Event(), threading.Event()
    frames: dict[str, types.FrameType] = {}

    def inner() -> None:
        frames["inner"] = sys._getframe()
        entered.set()
        release.wait()

    def outer() -> None:
        frames["outer"] = sys._getframe()
        inner()
        returned.set()
        release.wait()

    worker = threading.Thread(target=outer)
    worker.start()
    try:
        entered.wait()
        assert lifecycle.frame_alive(worker.ident, frames["outer"]) is True
        assert lifecycle.frame_alive(worker.ident, frames["inner"]) is True
        assert lifecycle.frame_alive(threading.get_ident(), frames["outer"]) is False
        assert lifecycle.frame_alive(threading.get_ident(), sys._getframe()) is True
    finally:
        release.set()
        worker.join()
    assert lifecycle.frame_alive(worker.ident, frames["outer"]) is False  # the thread is gone


def test_a_frame_that_returned_is_not_alive_while_its_thread_goes_on():
    returned, release = threading.Event(), threading.Event()
    frames: dict[str, types.FrameType] = {}

    def finished() -> None:
        frames["finished"] = sys._getframe()

    def worker_body() -> None:
        finished()
        returned.set()
        release.wait()

    worker = threading.Thread(target=worker_body)
    worker.start()
    try:
        returned.wait()
        assert lifecycle.frame_alive(worker.ident, frames["finished"]) is False
    finally:
        release.set()
        worker.join()


# -- caught_exception --------------------------------------------------------------------------------------------------


def raising_fit(frames: list[types.FrameType], callbacks: Any = None) -> None:
    frames.append(sys._getframe())
    raise ValueError("left fit()")


def keras_wrapper(frames: list[types.FrameType]) -> None:
    """The traceback-filtering wrapper around fit(): the outermost frame the exception unwinds."""
    raising_fit(frames)


def test_the_exception_a_caller_holds_is_found_from_the_fit_frame():
    frames: list[types.FrameType] = []
    try:
        keras_wrapper(frames)
    except ValueError as exc:
        found = lifecycle.caught_exception(threading.get_ident(), frames[0])
        assert found is exc


def test_the_exception_a_caller_in_another_thread_holds_is_found():
    frames: list[types.FrameType] = []
    holding, release = threading.Event(), threading.Event()
    caught: list[BaseException] = []

    def caller() -> None:
        try:
            keras_wrapper(frames)
        except ValueError as exc:
            caught.append(exc)
            holding.set()
            release.wait()

    worker = threading.Thread(target=caller)
    worker.start()
    try:
        holding.wait()
        assert lifecycle.caught_exception(worker.ident, frames[0]) is caught[0]
    finally:
        release.set()
        worker.join()


def returned_frame() -> types.FrameType:
    return sys._getframe()


def traceback_chain(length: int, tail_frame: types.FrameType, head_frame: types.FrameType) -> types.TracebackType:
    """`length` tracebacks, the last in `tail_frame`, the others in `head_frame`."""
    tb = types.TracebackType(None, tail_frame, 0, 1)
    for _ in range(length - 1):
        tb = types.TracebackType(tb, head_frame, 0, 1)
    return tb


def test_an_exception_up_to_20_tracebacks_from_the_outermost_frame_is_found():
    outermost = returned_frame()  # returned; its caller (this test) is still running
    here = sys._getframe()
    within = ValueError("19 steps up").with_traceback(traceback_chain(20, outermost, here))
    assert lifecycle.caught_exception(threading.get_ident(), outermost) is within
    del within
    beyond = ValueError("20 steps up").with_traceback(traceback_chain(21, outermost, here))
    assert lifecycle.caught_exception(threading.get_ident(), outermost) is None
    assert lifecycle.caught_exception(threading.get_ident(), outermost, max_depth=21) is beyond


def test_nothing_is_found_when_no_traceback_runs_through_the_outermost_frame():
    outermost = returned_frame()
    unrelated = ValueError("elsewhere").with_traceback(traceback_chain(2, returned_frame(), sys._getframe()))
    assert lifecycle.caught_exception(threading.get_ident(), outermost) is None
    del unrelated


@pytest.mark.parametrize("left_over_deeper", [True, False])
def test_the_exception_caught_by_a_running_frame_wins_over_one_left_over_from_an_earlier_catch(left_over_deeper):
    outermost, dead, here = returned_frame(), returned_frame(), sys._getframe()
    # One that a frame which has returned caught (left over in a cycle), one that the running caller holds; either
    # may be further from the outermost frame.
    left_over = ValueError("earlier").with_traceback(traceback_chain(3 if left_over_deeper else 2, outermost, dead))
    held = ValueError("now").with_traceback(traceback_chain(2 if left_over_deeper else 3, outermost, here))
    assert lifecycle.caught_exception(threading.get_ident(), outermost) is held
    del left_over, held


class CarriesATraceback(Exception):
    """An exception that holds another's traceback (to report it) and has none of its own."""

    __slots__ = ("carried",)


def test_an_exception_without_a_traceback_of_its_own_is_not_taken():
    outermost = returned_frame()
    carrier = CarriesATraceback("carrier")
    carrier.carried = traceback_chain(2, outermost, sys._getframe())
    assert carrier.__traceback__ is None
    assert lifecycle.caught_exception(threading.get_ident(), outermost) is None
    del carrier


# -- last_shell_error --------------------------------------------------------------------------------------------------


def test_the_shells_last_error_is_sys_last_value(monkeypatch):
    error = ZeroDivisionError("in a cell")
    monkeypatch.setattr(sys, "last_value", error, raising=False)
    assert lifecycle.last_shell_error() is error
    monkeypatch.delattr(sys, "last_value")
    assert lifecycle.last_shell_error() is None
