"""The process around a command: set up before it runs (memory, signals, logging, PROJ data),
and an unexpected failure put in one line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("geobert")


def prepare(args: argparse.Namespace) -> None:
    """Set the process up for the command in ``args``: heap tuning (before torch and GDAL
    allocate anything large), libraries' own error output silenced unless ``-v``/``--debug``,
    SIGTERM and SIGHUP as Ctrl-C, the address-space warning, logging, and PROJ data that fits the
    installed PROJ."""
    from tiles.heap import tune_heap

    tune_heap()
    loud = args.debug or args.verbose
    if not loud:
        # GDAL prints errors raised outside rasterio's handlers ("ERROR 1: TIFF…") itself; they
        # reach the user as geobert's one-line errors instead. --verbose/--debug show them.
        os.environ.setdefault("CPL_LOG", os.devnull)
        # Dask logs a lost scheduler or worker as tracebacks; geobert says it in one line
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
        silence_libtiff_stderr()
    interrupt_on_sigterm()
    warn_low_address_space()
    logging.basicConfig(level=log_level(args), format="%(levelname)s %(name)s: %(message)s")
    if not loud:
        # Dask logs a lost scheduler or worker (reconnect attempts, tracebacks) through its own
        # loggers; geobert says what happened in its one error line
        for handler in logging.getLogger().handlers:
            handler.addFilter(not_from_dask)
    from tiles.projdata import use_compatible_proj_data

    note = use_compatible_proj_data()  # a system PROJ_DATA/PROJ_LIB would break every CRS
    if note:
        log.info(note)


def log_level(args: argparse.Namespace) -> int:
    """DEBUG with ``--debug``, INFO with ``-v``, ERROR with ``-q`` (GDAL's warnings about a
    broken file too: the error line says enough), else WARNING.

    >>> log_level(argparse.Namespace(debug=False, verbose=False, quiet=True))
    40
    """
    if args.debug:
        return logging.DEBUG
    if args.verbose:
        return logging.INFO
    if getattr(args, "quiet", False):  # not every command has -q
        return logging.ERROR
    return logging.WARNING


def interrupt_on_sigterm() -> None:
    """SIGTERM (a front end's Cancel, a batch system's kill) and SIGHUP (a closed terminal, a
    dropped SSH session) unwind like Ctrl-C: staged outputs are removed and the exit status is
    130."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, handler)


_redelivery = {"pending": False}
"""Whether a swallowed interrupt is on its way back (at most one at a time)."""


def redeliver_swallowed_interrupts(delay: float = 0.05) -> None:
    """Deliver again a Ctrl-C that Python swallowed (POSIX; on Windows Python's own behaviour
    stays). Installed once per process, as the first thing :func:`geobert.cli.main` does.

    Python runs a Ctrl-C's handler at the next bytecode; when that is inside a weakref callback
    or a ``__del__`` (importlib's module locks have one, so a Ctrl-C during the imports of the
    first second can land there), the ``KeyboardInterrupt`` is "ignored": printed as a traceback
    and dropped, and the command runs on to write its outputs. This hook keeps the traceback off
    stderr and, ``delay`` seconds later, signals the main thread again — SIGINT, or SIGTERM where
    the process ignores SIGINT (a background job), whichever raises — from a thread of its own (a
    signal raised inside the hook would land in the hook and be dropped too); the command then
    unwinds as for any Ctrl-C. One re-delivery is pending at a time, and :func:`main`'s handling
    of an interrupt cancels it. Every other unraisable exception, and an interrupt when no signal
    would raise, goes to the previous hook.
    """
    import _thread
    import signal
    import threading
    import time

    previous = sys.unraisablehook
    if getattr(previous, "redelivers_interrupts", False) or not hasattr(signal, "pthread_kill"):
        return  # already installed, or Windows
    main = threading.main_thread().ident
    assert main is not None

    def send(signum: int) -> None:
        time.sleep(delay)
        if _redelivery["pending"]:
            _redelivery["pending"] = False
            signal.pthread_kill(main, signum)

    def redeliver(unraisable: Any) -> None:
        raising = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
        if not raising:
            previous(unraisable)
        elif not _redelivery["pending"]:
            _redelivery["pending"] = True
            # a bare thread: threading.Timer takes threading's locks, which the code this
            # callback interrupted may hold
            _thread.start_new_thread(send, (raising[0],))

    def hook(unraisable: Any) -> None:
        try:
            if unraisable.exc_type is not None and issubclass(
                unraisable.exc_type, KeyboardInterrupt
            ):
                redeliver(unraisable)
            else:
                previous(unraisable)
        except KeyboardInterrupt:  # a Ctrl-C landing in this hook would be dropped too
            redeliver(unraisable)

    hook.redelivers_interrupts = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


#: packages whose import runs Python from C++ through pybind11: a ``KeyboardInterrupt`` raised
#: there cannot unwind and aborts the process ("terminate called after throwing an instance of
#: 'pybind11::error_already_set'", SIGABRT) instead of reaching geobert's one line
PYBIND11_IMPORTS = frozenset({"torch"})


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and raise it when the block ends.

    Only in the main thread while Python's own SIGINT handler is installed; anywhere else (a
    worker thread, a handler of the caller's, SIGINT ignored) the block runs as it is."""
    import signal
    import threading

    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


class _InterruptsHeldOnImport(importlib.abc.MetaPathFinder):
    """Imports ``names`` (top-level packages, with every import they make while they load) with
    Ctrl-C held until their code has run (:func:`deferred_interrupts`); a held Ctrl-C then fails
    the import with ``KeyboardInterrupt``, raised in Python, where it unwinds."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_held(module: types.ModuleType) -> None:
            with deferred_interrupts():
                exec_module(module)

        spec.loader.exec_module = exec_held  # type: ignore[method-assign]
        return spec


def hold_interrupts_during_pybind11_imports(names: frozenset[str] = PYBIND11_IMPORTS) -> None:
    """Make the first import of ``names`` hold a Ctrl-C until it is done, so that it reaches
    :func:`geobert.cli.main` as a ``KeyboardInterrupt`` (one line, status 130). Installed once
    per process, as :func:`redeliver_swallowed_interrupts` is."""
    if not any(isinstance(f, _InterruptsHeldOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _InterruptsHeldOnImport(names))


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised because of a Ctrl-C: a ``KeyboardInterrupt`` in its chain of
    causes. Python 3.11 wraps one raised while a class is created (a dataclass's fields run
    ``__set_name__``, so a Ctrl-C during the first second's imports can land there) in a
    ``RuntimeError`` ("Error calling __set_name__ …") whose cause it is.

    >>> try:
    ...     raise RuntimeError("Error calling __set_name__") from KeyboardInterrupt()
    ... except RuntimeError as e:
    ...     wrapped = e
    >>> caused_by_interrupt(wrapped), caused_by_interrupt(ValueError("no"))
    (True, False)
    """
    from tiles.errors import exception_chain

    return any(isinstance(e, KeyboardInterrupt) for e in exception_chain(exc))


def cancel_redelivery() -> None:
    """Drop a pending re-delivery: the interrupt it would bring is being handled."""
    _redelivery["pending"] = False


def silence_libtiff_stderr() -> None:
    """Stop libtiff printing its own error lines (``_tiffWriteProc: No space left on device.``)
    straight to stderr. GDAL reports the same failures as errors, which geobert turns into its
    one-line messages; the raw lines would only duplicate them."""
    import contextlib
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("rasterio")
    if spec is None or spec.origin is None:
        return
    libs = Path(spec.origin).parent.parent / "rasterio.libs"
    for lib in sorted(libs.glob("libtiff-*.so*")):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(str(lib)).TIFFSetErrorHandler(None)


def warn_low_address_space(floor: int = 4 << 30) -> None:
    """A ``ulimit -v`` under ~4 GiB can make GDAL abort (a C-level ``CPLMalloc`` failure that no
    handler can turn into a message) once torch has mapped its libraries; say so up front."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < floor:
        print(
            f"geobert: warning: the address-space limit (ulimit -v) is {soft / 2**30:.1f} GiB; "
            "torch maps ~3 GB when it loads, so geobert may stop with 'Out of memory': raise "
            "the limit to 4 GiB or more",
            file=sys.stderr,
        )


def not_from_dask(record: logging.LogRecord) -> bool:
    """Log filter: drop records of Dask's distributed loggers (shown with -v/--debug)."""
    return not record.name.startswith(("distributed", "tornado"))


def out_of_memory(exc: BaseException) -> bool:
    """An allocation failure, as Python, PyTorch's allocator or the loader report it."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return any(
        s in text
        for s in ("can't allocate memory", "failed to map segment", "Cannot allocate memory")
    )


DISK_HINTS = {
    errno.ENOSPC: "free space on that disk or write elsewhere (-o)",
    errno.EDQUOT: "free space within your quota or write elsewhere (-o)",
    errno.EROFS: "the disk is read-only; write elsewhere (-o)",
    errno.EACCES: "you lack permission there; write elsewhere (-o)",
    errno.EFBIG: "the file system cannot hold a file that large; write elsewhere (-o)",
    errno.ENAMETOOLONG: "the path is longer than the file system allows; choose a shorter one",
}
"""What to do about an ``OSError`` with this errno while writing."""


def unexpected_error(exc: Exception) -> tuple[str, int]:
    """The one stderr line and the exit status for an exception that is no
    :class:`~geobert.errors.GeobertError`: out of memory and a full, read-only or forbidden disk
    say what to do (status 2); anything else asks for a rerun with ``--debug`` (status 1).

    >>> unexpected_error(ValueError("odd\\nsecond line"))
    ('geobert: unexpected error: ValueError: odd (rerun with --debug for details ...)', 1)
    """
    if out_of_memory(exc):
        what = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        return (
            f"geobert: error: out of memory ({what}); use fewer "
            "--workers, a smaller --tile-size or --batch-size 1, or a machine with more "
            "memory (a CUDA build of torch alone maps ~3 GB: on a CPU-only machine install "
            "the CPU build)",
            2,
        )
    hint = DISK_HINTS.get(exc.errno or 0) if isinstance(exc, OSError) else None
    if hint is not None and isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"geobert: error: {exc.strerror}{where}; {hint}", 2
    text = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"geobert: unexpected error: {type(exc).__name__}: {text} (rerun with --debug for "
        "details and report it)",
        1,
    )
