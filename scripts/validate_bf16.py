"""bf16 vs fp32 inference of one change model on the labelled OSCD cities (issue 15).

Scores the model's change mask at its own threshold in fp32 and under bfloat16 autocast on every
labelled city, writes per-city and pooled F1 of both to ``OUT/bf16_validation.{json,md}``, and with
``--record`` stores the result in the model card (``training["bf16_validation"]``), which is what
``--precision auto`` reads: bf16 is then used on CPUs with bf16 units only when the pooled F1
moved by at most ``BF16_F1_TOLERANCE`` (0.5 points). The cities may be the model's training cities:
the comparison measures the arithmetic, not generalisation (the protocol measures that in fp32).

    .venv/bin/python scripts/validate_bf16.py --data ../shared/data/oscd \\
        --model geobert/weights/changenet_s_oscd.safetensors --out results/change_oscd/bf16_current
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

from geobert.change.evaluate import _as_model_sees
from geobert.change.metrics import ChangeScores, pooled, scores
from geobert.change.oscd import list_cities
from geobert.change.train import load_city, predict_city
from geobert.models.changenet import ChangeModel
from geobert.models.checkpoint import load_checkpoint, save_checkpoint
from geobert.models.precision import BF16_F1_TOLERANCE, native_bf16

log = logging.getLogger("validate_bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="OSCD root (images/, labels/)")
    ap.add_argument("--model", required=True, help="change checkpoint (.safetensors)")
    ap.add_argument("--out", required=True, help="folder for bf16_validation.json / .md")
    ap.add_argument("--record", action="store_true", help="store the result in the model card")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model, card = load_checkpoint(args.model)
    threshold = float(card.training["threshold"])
    per: dict[str, dict[str, ChangeScores]] = {"fp32": {}, "bf16": {}}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    agree: dict[str, float] = {}
    for city in list_cities(args.data, labelled_only=True):
        arrays = _as_model_sees(load_city(city, card), card)
        masks = {}
        for prec in ("fp32", "bf16"):
            t0 = time.perf_counter()
            prob = predict_city(cast(ChangeModel, model), arrays, precision=prec)
            seconds[prec] += time.perf_counter() - t0
            masks[prec] = prob > threshold
            per[prec][city.name] = scores(masks[prec], arrays.label, arrays.valid)
        agree[city.name] = float((masks["fp32"] == masks["bf16"])[arrays.valid].mean())
        log.info(
            "%s: F1 fp32 %.4f bf16 %.4f (masks agree on %.4f)",
            city.name,
            per["fp32"][city.name].f1,
            per["bf16"][city.name].f1,
            agree[city.name],
        )
    f1 = {p: pooled(per[p]).f1 for p in per}
    mean = {p: sum(s.f1 for s in per[p].values()) / len(per[p]) for p in per}
    record = {
        "f1_delta": round(f1["bf16"] - f1["fp32"], 5),
        "mean_f1_delta": round(mean["bf16"] - mean["fp32"], 5),
        "pooled_f1_fp32": round(f1["fp32"], 5),
        "pooled_f1_bf16": round(f1["bf16"], 5),
        "cities": sorted(agree),
        "min_mask_agreement": round(min(agree.values()), 5),
        "threshold": threshold,
        "tolerance": BF16_F1_TOLERANCE,
        "how": "scripts/validate_bf16.py: the same model and threshold, fp32 vs bf16 autocast",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "model": str(args.model),
        **record,
        "per_city": {p: {c: s.as_dict() for c, s in per[p].items()} for p in per},
        "mask_agreement": agree,
        "seconds": seconds,
        "native_bf16": native_bf16(),
    }
    (out / "bf16_validation.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# bf16 vs fp32: {Path(args.model).name} at threshold {threshold}",
        "",
        "| city | F1 fp32 | F1 bf16 | masks agree |",
        "|---|---|---|---|",
        *(
            f"| {c} | {per['fp32'][c].f1:.4f} | {per['bf16'][c].f1:.4f} | {100 * agree[c]:.2f} % |"
            for c in sorted(agree)
        ),
        f"| **pooled** | {f1['fp32']:.4f} | {f1['bf16']:.4f} | |",
        f"| mean | {mean['fp32']:.4f} | {mean['bf16']:.4f} | |",
        "",
        f"Pooled F1 difference {record['f1_delta']:+.4f} (tolerance ±{BF16_F1_TOLERANCE}); "
        f"inference seconds fp32 {seconds['fp32']:.0f}, bf16 {seconds['bf16']:.0f} on a CPU "
        f"{'with' if native_bf16() else 'without'} bf16 units.",
    ]
    (out / "bf16_validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.record:
        save_checkpoint(
            model, replace(card, training={**card.training, "bf16_validation": record}), args.model
        )
        log.info("recorded in %s", args.model)


if __name__ == "__main__":
    main()
