"""Run the geobert command line as a worker process (no QGIS imports: testable anywhere).

QGIS's own GDAL/GEOS/PROJ clash with the pip wheels geobert needs, so the plugin never imports
geobert: it starts ``PYTHON -m geobert.cli --progress-lines COMMAND ...`` in the environment the
user configured, turns its ``progress: P`` lines into progress updates, stops it with SIGTERM
on cancel (geobert then removes its staged outputs), and reports its one-line error.
"""

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PROGRESS_PREFIX = "progress: "


@dataclass
class WorkerResult:
    """Outcome of one worker run."""

    returncode: int
    cancelled: bool = False
    error: str = ""
    stderr: str = ""
    stdout_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled


def geobert_command(python: str, *args: str) -> list[str]:
    """The worker command line for ``args`` (a geobert subcommand and its options).

    ``-P`` (Python ≥ 3.11, which geobert needs) keeps QGIS's current folder off ``sys.path``: a
    folder holding a ``geobert/`` source checkout would otherwise shadow the installed package.
    """
    return [python, "-P", "-m", "geobert.cli", "--progress-lines", *args]


def install_hint(python: str) -> str:
    return (
        f"install geobert into that environment: {python} -m pip install geobert "
        "(or, from a source checkout, bash scripts/setup.sh and point the plugin to "
        ".venv/bin/python)"
    )


SETTING_HINT = (
    "set it in Processing ▸ Options ▸ Providers ▸ geobert (the Python with geobert installed, "
    "e.g. /path/to/.venv/bin/python), then run the Check geobert environment tool"
)


def start_error(python: str, exc: OSError) -> str:
    """One line for a worker Python that cannot be started at all."""
    if os.path.isdir(python):
        inside = os.path.join(python, "Scripts" if os.name == "nt" else "bin", "python")
        return (
            f"geobert: the geobert Python is set to the folder {python}, not to a Python "
            f"program (for a virtual environment: {inside}); {SETTING_HINT}"
        )
    if isinstance(exc, FileNotFoundError):
        return f"geobert: there is no Python at {python} (moved or deleted?); {SETTING_HINT}"
    reason = exc.strerror or type(exc).__name__
    return f"geobert: cannot start the geobert Python {python} ({reason}); {SETTING_HINT}"


def missing_geobert(python: str, stderr: str) -> str:
    """The one line for a Python without geobert (``No module named geobert``), or ""."""
    if "No module named geobert" in stderr or "No module named 'geobert'" in stderr:
        return f"geobert: {python} has no geobert installed; {install_hint(python)}; {SETTING_HINT}"
    return ""


def check_environment(python: str, timeout: float = 120.0) -> tuple[bool, str]:
    """Whether ``python`` can run geobert; the message says what it found or how to fix it."""
    try:
        proc = subprocess.run(
            [python, "-P", "-m", "geobert.cli", "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except OSError as exc:
        return False, start_error(python, exc).removeprefix("geobert: ")
    except subprocess.TimeoutExpired:
        return False, f"{python} did not answer within {timeout:.0f} s"
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version.startswith("geobert "):
        missing = missing_geobert(python, proc.stderr)
        if missing:
            return False, missing.removeprefix("geobert: ")
        last = (proc.stderr.strip().splitlines() or [version or "no output"])[-1]
        return False, f"{python} cannot run geobert ({last}); {install_hint(python)}"
    return True, version


def _error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("geobert:"):
            return ln
    return lines[-1] if lines else ""


def run_worker(
    command: list[str],
    on_progress: Callable[[float], None],
    is_cancelled: Callable[[], bool],
    on_line: Callable[[str], None] | None = None,
    poll_s: float = 0.1,
    grace_s: float = 30.0,
    env: dict | None = None,
) -> WorkerResult:
    """Run ``command``; report progress; stop it when ``is_cancelled()`` becomes true.

    ``on_progress``, ``on_line`` and ``is_cancelled`` are all called on the calling thread, at
    least every ``poll_s`` seconds while the worker runs: the pipes are read by helper threads,
    but QGIS's feedback signals emitted from those threads are queued to a main thread that is
    blocked in this loop (qgis_process, Processing's batch mode), so they showed nothing until
    the run ended. ``is_cancelled`` may also let the caller's event loop breathe.

    A Python that cannot be started, or that lacks geobert, comes back as one line in
    ``error`` (never a traceback), pointing at the setting and the Check tool.
    """
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, **(env or {})},
        )
    except OSError as exc:
        return WorkerResult(returncode=127, error=start_error(command[0], exc))
    lines: list[str] = []
    err_chunks: list[str] = []
    events: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            events.put(raw.rstrip("\n"))

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            err_chunks.append(raw)

    def deliver(line: str) -> None:
        lines.append(line)
        if line.startswith(PROGRESS_PREFIX):
            with contextlib.suppress(ValueError):
                on_progress(float(line[len(PROGRESS_PREFIX) :]))
        elif on_line is not None and line:
            on_line(line)

    def deliver_waiting() -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                deliver(events.get_nowait())

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for t in readers:
        t.daemon = True
        t.start()
    cancelled = False
    while proc.poll() is None:
        deliver_waiting()
        if is_cancelled():
            cancelled = True
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(poll_s)
            if proc.poll() is None:
                proc.kill()
            break
        with contextlib.suppress(queue.Empty):
            deliver(events.get(timeout=poll_s))
    proc.wait()
    for t in readers:
        t.join(timeout=5)
    deliver_waiting()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    stderr = "".join(err_chunks)
    return WorkerResult(
        returncode=proc.returncode,
        cancelled=cancelled,
        error=(missing_geobert(command[0], stderr) or _error_line(stderr))
        if proc.returncode != 0
        else "",
        stderr=stderr,
        stdout_lines=lines,
    )
