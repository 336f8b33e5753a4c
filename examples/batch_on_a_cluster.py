"""Many scenes on a Dask cluster, from Python: a manifest, one resumable batch.

Without ``--scheduler`` it starts a two-worker cluster on this machine (loopback; the same
processes ``dask scheduler`` and ``dask worker`` start) and runs a change pair and a
classification of the example data on it:

    python examples/batch_on_a_cluster.py [--scheduler tcp://HOST:8786] [-o OUTDIR]

On a real cluster the workers must read the inputs at the same paths (a shared file system) or
as URLs (``s3://…``, ``https://…``); the outputs are written by this machine. Rerun the same
command and finished items are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def cluster(address: str | None) -> Iterator[str]:
    """``address`` as it is, or a loopback cluster of two workers for the duration."""
    if address:
        yield address
        return
    from tiles.testing import LoopbackCluster

    with (
        tempfile.TemporaryDirectory() as tmp,
        LoopbackCluster.start(Path(tmp), n_workers=2) as local,
    ):
        yield local.address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a running cluster")
    ap.add_argument("-o", "--outdir", default=Path("out/batch_example"), type=Path)
    args = ap.parse_args()

    from geobert.batch import run_batch
    from tiles.engine import EngineConfig

    args.outdir.mkdir(parents=True, exist_ok=True)
    manifest = args.outdir / "manifest.csv"
    ab = HERE / "abudhabi"
    manifest.write_text(
        "id,command,before,after,scene\n"
        f"abudhabi_2016_2018,change,{ab / 'imgs_1'},{ab / 'imgs_2'},\n"
        f"brandenburg_2017,classify,,,{HERE / 'brandenburg'}\n"
    )
    with cluster(args.scheduler) as address:
        print(f"running on the cluster at {address}")
        rows = run_batch(manifest, args.outdir, config=EngineConfig(scheduler=address))
    for row in rows:
        print(f"  {row['id']}: {row['status']} ({row['run']} run), {row['polygons']} polygons, "
              f"{row['area_ha']} ha, {row['seconds']} s")  # fmt: skip
    print(f"per item: {args.outdir}/<id>/; the table: {args.outdir}/batch_summary.csv")


if __name__ == "__main__":
    main()
