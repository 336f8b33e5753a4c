"""Write a command's outputs into a hidden folder beside them; publish them only on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from geobert.errors import OutputExistsError, OutputNotWritableError
from tiles.writer import check_not_input

__all__ = ["input_paths", "staged_outputs"]


@contextlib.contextmanager
def staged_outputs(
    outdir: str | os.PathLike[str],
    names: Sequence[str],
    *,
    overwrite: bool,
    tag: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
    stale: Sequence[str] = (),
) -> Iterator[Path]:
    """Yield a fresh folder inside ``outdir`` to write ``names`` into.

    ``stale`` names outputs another form of the command writes (``zones.csv`` of a run with
    zones): a run that does not write them replaces an earlier run's set whole, so they go too.

    On normal exit the outputs appear together: older outputs are moved aside first, the new ones
    moved in, and if any move fails everything is put back as it was. On any error or interruption
    nothing in ``outdir`` changes, and an ``outdir`` this call created is removed again. The
    staging folder is always removed. Existing outputs without ``overwrite``, an output name taken
    by a folder, and another geobert run writing into ``outdir`` are refused before any work.
    """
    out = Path(outdir)
    check_not_input([out / n for n in names], inputs)  # an input folder as OUTDIR, an input file
    folders = [n for n in names if (out / n).is_dir()]
    if folders:
        raise OutputExistsError(
            f"{out} holds folder(s) named {folders}, where geobert writes files; rename or "
            "remove them, or write elsewhere (-o)"
        )
    existing = [n for n in (*names, *stale) if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{out} already holds {existing}; pass --overwrite to replace them")
    created = not out.exists()
    if out.exists() and not out.is_dir():
        raise OutputNotWritableError(
            f"the output folder {out} is a file, not a folder; choose a folder with -o"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot create output folder {out} ({exc.strerror}); choose a writable folder with -o"
        ) from exc
    stage = out / f".geobert-{tag}-{uuid.uuid4().hex[:8]}"
    try:
        stage.mkdir()
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise OutputNotWritableError(
            f"output folder {out} is not writable ({exc.strerror}); choose a writable folder "
            "with -o"
        ) from exc
    ok = False
    lock = None
    try:
        lock = _lock(out, stage)
        _recover_stale(out, stage)
        yield stage
        _publish(stage, out, names, stale)
        ok = True
    finally:
        if lock is not None:
            _unlock(lock, out)
        shutil.rmtree(stage, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):  # only if empty: never remove anything else
                out.rmdir()


_LOCK_NAME = ".geobert.lock"


def _lock(out: Path, stage: Path) -> Any:
    """Hold an exclusive lock on ``out`` for this run (released when the process ends, even if
    killed): two runs into one folder would otherwise both succeed, one replacing the other."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; a second run is not detected there
        return None
    path = out / _LOCK_NAME
    for _ in range(5):
        f = open(path, "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise OutputExistsError(
                f"another geobert run is writing into {out}; wait for it to finish or write "
                "elsewhere (-o)"
            ) from None
        try:  # a run that just finished may have removed the file we locked: lock the new one
            if os.fstat(f.fileno()).st_ino == os.stat(path).st_ino:
                return f
        except FileNotFoundError:
            pass
        f.close()
    raise OutputExistsError(
        f"other geobert runs keep starting and finishing in {out}; write elsewhere (-o)"
    )


def _unlock(f: Any, out: Path) -> None:
    with contextlib.suppress(OSError):
        (out / _LOCK_NAME).unlink()
    f.close()


def _recover_stale(out: Path, stage: Path) -> None:
    """Staging folders of runs that died without unwinding (SIGKILL, out of memory, power):
    with the lock held no other run is alive in ``out``, so their partial files go, and outputs
    one of them had moved aside mid-publish come back where nothing replaced them."""
    for old in out.glob(".geobert-*"):
        if old == stage or not old.is_dir():
            continue
        previous = old / ".previous"
        if previous.is_dir():
            for item in previous.iterdir():
                if not (out / item.name).exists():
                    with contextlib.suppress(OSError):
                        os.replace(item, out / item.name)
        shutil.rmtree(old, ignore_errors=True)


def _publish(stage: Path, out: Path, names: Sequence[str], stale: Sequence[str] = ()) -> None:
    """Move the staged ``names`` into ``out`` as one set (older ones — and the ``stale`` ones —
    aside first, all put back if a move fails)."""
    previous = stage / ".previous"
    previous.mkdir()
    aside: list[str] = []
    placed: list[str] = []
    try:
        for name in (*names, *stale):
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, previous / name)
                aside.append(name)
        for name in names:
            os.replace(stage / name, out / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            with contextlib.suppress(OSError):
                os.replace(out / name, stage / name)
        for name in aside:
            with contextlib.suppress(OSError):
                os.replace(previous / name, out / name)
        raise


def input_paths(*sources: object) -> list[str]:
    """The paths of inputs given as a path or a list of band files (for the output checks)."""
    out: list[str] = []
    for src in sources:
        if isinstance(src, str | os.PathLike):
            out.append(os.fspath(src))
        elif isinstance(src, list | tuple):
            out += [os.fspath(x) for x in src]
    return out
