"""What the commands tell the user while and after they run: a progress bar or progress lines,
and the one last line on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def progress(args: argparse.Namespace) -> Any:
    """The engine's progress callback: ``progress: PERCENT`` lines on stdout with
    ``--progress-lines``, else a tqdm bar over the tiles (none with ``-q``)."""
    from geobert._progress import LineProgress, TqdmProgress

    if args.progress_lines:
        return LineProgress()
    return TqdmProgress(desc="tiles", disable=args.quiet)


def done(args: argparse.Namespace) -> None:
    """With ``--progress-lines``, the final ``progress: 100.0`` line."""
    if args.progress_lines:
        print("progress: 100.0", flush=True)


def step_bar(
    desc: str,
    total: int,
    quiet: bool,
    lines: bool = False,
    span: tuple[float, float] = (0.0, 90.0),
) -> tuple[Any, Any]:
    """A tqdm bar over training steps and the ``on_step(step, total, loss)`` callback feeding it
    (with ``lines``: progress lines on stdout instead, the steps mapped to ``span`` percent —
    0–90 %; a command with two training stages gives each its part)."""
    from tqdm import tqdm

    from geobert._progress import LineProgress

    bar = tqdm(total=total, desc=desc, unit="step", disable=quiet or lines)
    line = LineProgress() if lines else None

    def on_step(step: int, total: int, loss: float) -> None:
        if line is not None:
            line.emit(span[0] + (span[1] - span[0]) * step / total)
        bar.n = step
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.refresh()

    return bar, on_step


def last_line(args: argparse.Namespace, summary: dict[str, Any], line: str) -> None:
    """The run's last line, with the caveat when it found reasons not to trust its result;
    ``-q`` drops the line but never those reasons (one line each)."""
    notes = summary.get("warnings", [])
    if args.quiet:
        for note in notes:
            print(f"geobert: warning: {note}", file=sys.stderr)
        return
    clouds = summary.get("cloud_masked_share")
    if isinstance(clouds, dict) and clouds:  # change: one share per date
        line += "; clouds masked: " + ", ".join(
            f"{k.upper()} {100 * v:.1f} %" for k, v in clouds.items()
        )
    elif isinstance(clouds, int | float):
        line += f"; clouds masked: {100 * clouds:.1f} %"
    if notes:
        n = len(notes)
        line += (
            f"; not to be trusted without checking: {n} warning{'s' if n > 1 else ''} above and "
            "in summary.json"
        )
    print(line, file=sys.stderr)
