"""Write a command's outputs into a hidden folder beside them; publish them only on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

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
) -> Iterator[Path]:
    """Yield a fresh folder inside ``outdir`` to write ``names`` into.

    On normal exit every name is moved into ``outdir`` (replacing older outputs); on any error
    or interruption nothing in ``outdir`` changes, and an ``outdir`` this call created is removed
    again. The staging folder is always removed. Existing outputs without ``overwrite`` are
    refused before any work starts.
    """
    out = Path(outdir)
    check_not_input([out / n for n in names], inputs)  # an input folder as OUTDIR, an input file
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{out} already holds {existing}; pass --overwrite to replace them")
    created = not out.exists()
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
    try:
        yield stage
        for name in names:
            os.replace(stage / name, out / name)
        ok = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):  # only if empty: never remove anything else
                out.rmdir()


def input_paths(*sources: object) -> list[str]:
    """The paths of inputs given as a path or a list of band files (for the output checks)."""
    out: list[str] = []
    for src in sources:
        if isinstance(src, str | os.PathLike):
            out.append(os.fspath(src))
        elif isinstance(src, list | tuple):
            out += [os.fspath(x) for x in src]
    return out
