"""How much labelled change the L1C cloud mask would hide, per threshold (tiles/clouds.py).

s2cloudless confuses some bright ground (building sites, roofs) with cloud; in change detection
a false cloud is worse than a missed one — it hides exactly the change a user looks for. On the
labelled OSCD cities (``--data``), for each probability threshold: the share of all valid pixels
masked (either date) and the share of the **labelled change** pixels masked. A mask that
prefers change (ratio > 1) is hiding change, not clouds.

    .venv/bin/python scripts/cloud_mask_check.py --data ../shared/data/oscd --out results/clouds
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from rasterio.windows import Window

from geobert.change.oscd import list_cities, read_label
from tiles.clouds import CloudDetector, detect_clouds
from tiles.pair import align_pair
from tiles.scene import open_scene

THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="results/clouds")
    args = ap.parse_args()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for city in list_cities(args.data, labelled_only=True):
        pair0 = align_pair(open_scene(city.before), open_scene(city.after))
        h, w = pair0.grid.shape
        _, valid = pair0.read(Window(0, 0, w, h))
        label = read_label(city.label, open_scene(city.before).grid)[:h, :w]
        change = label.astype(bool) & valid
        rows[city.name] = {}
        for t in THRESHOLDS:
            det = replace(CloudDetector(), threshold=t)
            b = detect_clouds(open_scene(city.before), det)
            a = detect_clouds(open_scene(city.after), det)
            _, v = align_pair(b, a).read(Window(0, 0, w, h))
            masked = valid & ~v
            rows[city.name][str(t)] = {
                "masked_share": float(masked.sum() / valid.sum()),
                "change_masked_share": float((masked & change).sum() / max(change.sum(), 1)),
            }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cloud_mask_check.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = "| city | " + " | ".join(f"t={t}: masked / change masked" for t in THRESHOLDS) + " |"
    lines = [head, "|---|" + "---|" * len(THRESHOLDS)]
    for c, r in rows.items():
        cells = []
        for t in THRESHOLDS:
            m, cm = r[str(t)]["masked_share"], r[str(t)]["change_masked_share"]
            cells.append(f"{100 * m:.1f} % / {100 * cm:.1f} %")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    (out / "cloud_mask_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
