"""How much change models flag on OSCD's 10 *unlabelled* city pairs (none of them in training).

OSCD's labelled cities have 0.3–3.8 % change; a map flagging far more on a pair of the same
kind is most likely reading season, light or haze as change (the held-back summer → winter pair
was flagged 50 % changed). Without labels this cannot give F1, but it shows floods, and whether
the run's own warnings catch them. Writes a Markdown table (and JSON) per city: dates, the
radiometric fit of the second date, the flagged share of each model, and the warnings.

    .venv/bin/python scripts/change_flood_check.py --data ../shared/data/oscd \
        --models geobert/weights/changenet_s_oscd.safetensors runs/change_loco/final.safetensors \
        --names previous new -o results/change_oscd/loco/flood_unlabelled
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import numpy as np

from geobert.change.oscd import list_cities
from geobert.change.radiometry import radiometric_report
from geobert.change.train import CityArrays, predict_city
from geobert.models.changenet import ChangeModel
from geobert.models.checkpoint import load_checkpoint
from tiles.dates import acquisition_date
from tiles.pair import align_pair
from tiles.scene import open_scene


def load_pair(before: Path, after: Path, card: Any) -> CityArrays:
    from rasterio.windows import Window

    pair = align_pair(open_scene(before), open_scene(after))
    h, w = pair.grid.shape
    data, valid = pair.read(Window(0, 0, w, h))
    n = len(pair.before.band_names)
    idx = card.band_indices(pair.before.band_names)
    b = card.normalize(data[None, :n].astype(np.float32), idx)[0]
    a = card.normalize(data[None, n:].astype(np.float32), idx)[0]
    return CityArrays("", b, a, np.zeros((h, w), np.uint8), valid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--names", nargs="+", required=True)
    ap.add_argument("-o", "--out", required=True, help="output path without suffix")
    args = ap.parse_args()
    models = [load_checkpoint(m) for m in args.models]
    rows: list[dict[str, Any]] = []
    for city in list_cities(args.data):
        if city.label is not None:
            continue
        row: dict[str, Any] = {"city": city.name}
        d1, d2 = acquisition_date(city.before), acquisition_date(city.after)
        row["dates"] = f"{d1.date if d1 else '?'} → {d2.date if d2 else '?'}"
        for (model, card), name in zip(models, args.names, strict=True):
            arrays = load_pair(city.before, city.after, card)
            fit = None
            if card.training.get("radiometric_normalization"):
                arrays = arrays.normalized()
                fit = arrays.radiometric
            prob = predict_city(cast(ChangeModel, model), arrays)
            t = float(card.training["threshold"])
            share = float((prob > t)[arrays.valid].mean())
            row[name] = round(share, 4)
            notes = radiometric_report(fit) if fit is not None else []
            trained = float(card.training.get("train_change_share", 0.02))
            if share > max(0.10, 4 * trained):
                notes.append("flagged share far above training")
            row[f"{name} warnings"] = notes
            if fit is not None:
                row["gain range"] = f"{min(fit.gain):.2f}–{max(fit.gain):.2f}"
                row["median correlation"] = round(float(np.nanmedian(fit.correlation)), 2)
        rows.append(row)
        print(json.dumps(row))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    head = ["city", "dates", *(f"flagged, {n}" for n in args.names), "warnings (last model)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["city"], r["dates"]]
        cells += [f"{100 * r[n]:.1f} %" for n in args.names]
        cells.append("; ".join(r[f"{args.names[-1]} warnings"]) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    for n in args.names:
        v = np.array([r[n] for r in rows])
        lines.append(
            f"\n{n}: median {100 * np.median(v):.1f} %, max {100 * v.max():.1f} %, "
            f"pairs over 10 %: {int((v > 0.10).sum())} of {len(v)}"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
