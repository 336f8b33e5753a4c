"""Land cover from your own polygons, from Python: train on digitised polygons, map a scene.

Trains on the Brandenburg test crop and its OpenStreetMap land-use polygons (shipped in
``tests/data/brandenburg``) and maps the example scene east of it (``examples/brandenburg``),
unless given others:

    python examples/landcover_from_polygons.py [--image SCENE --labels POLYGONS
        --class-field FIELD] [--map SCENE] [--steps N] [-o OUTDIR]

``--steps`` defaults to 60 so the example runs in a minute or two on a laptop; the shipped
recipe uses 800 (``geobert train-landcover``'s default). Check how a model holds away from its
polygons with ``geobert evaluate-landcover --split strips`` before trusting its map.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
CROP = HERE.parent / "tests" / "data" / "brandenburg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=CROP, type=Path, help="scene the polygons lie on")
    ap.add_argument("--labels", default=CROP / "landuse.gpkg", type=Path, help="polygons")
    ap.add_argument("--class-field", default="fclass", help="the polygons' class field")
    ap.add_argument("--map", default=HERE / "brandenburg", type=Path, help="scene to classify")
    ap.add_argument("--steps", default=60, type=int, help="training steps (shipped recipe: 800)")
    ap.add_argument("-o", "--outdir", default=Path("out/landcover_example"), type=Path)
    args = ap.parse_args()

    from geobert.landcover.pipeline import classify
    from geobert.landcover.train import (
        LandCoverTrainConfig,
        prepare_landcover,
        source_of,
        train_landcover,
    )
    from geobert.models.checkpoint import read_card, save_checkpoint
    from geobert.models.precision import native_bf16
    from geobert.weights import pretrained_encoder_path

    encoder = pretrained_encoder_path()
    # the recipe, with fewer steps; bf16 steps only where the CPU has bf16 units
    cfg = LandCoverTrainConfig(steps=args.steps, train_bf16=native_bf16())
    data = prepare_landcover(
        args.image, args.labels, args.class_field, read_card(encoder), **cfg.split_options()
    )
    print(f"training on {data.report['train_pixels']} labelled pixels of {len(data.classes)} "
          f"classes; {data.report['holdout_pixels']} held out in blocks")  # fmt: skip
    model, card = train_landcover(
        data, encoder, cfg, source=source_of(args.image, args.labels, args.class_field)
    )
    args.outdir.mkdir(parents=True, exist_ok=True)
    model_path = args.outdir / "my_landcover.safetensors"
    save_checkpoint(model, card, model_path)
    print(f"hold-out macro-F1 {card.training['holdout']['macro_f1']:.3f} ({model_path})")

    summary = classify(args.map, args.outdir / "map", model=model_path, overwrite=True)
    for name, ha in sorted(summary["areas_ha"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:>12}: {ha:8.1f} ha")
    for warning in summary["warnings"]:
        print(f"  warning: {warning}")


if __name__ == "__main__":
    main()
