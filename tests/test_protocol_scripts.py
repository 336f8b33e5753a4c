"""The protocol scripts in scripts/ refuse what the protocols rule out, in one line each."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geobert.models.checkpoint import read_card

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "geobert" / "weights" / "geobert_s_mim.safetensors"
UNFINISHED = f"has {read_card(SHIPPED).training['steps_done']} of 12000 pretraining steps"
LONG_CHANGE = "geobert (MIM 12k, band dropout)"
LONG_LANDCOVER = "geobert (MIM 12k, pixel path, band dropout)"
BITEMPORAL = "geobert (bi-temporal MIM, band dropout)"
RELATIVE = "geobert (bi-temporal MIM relative, band dropout)"
RESIDUAL = "geobert (bi-temporal MIM residual, band dropout)"
SCENE = "geobert (MIM + scene, pixel path, band dropout)"
SCENE_3K = "geobert (MIM + scene 3k, pixel path, band dropout)"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--data", "/nowhere",
                           *args], capture_output=True, text=True, timeout=300)  # fmt: skip


def _script(name: str) -> Any:
    """A module of scripts/ (they import each other by name, so scripts/ is on the path while
    it loads)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("change_loco.py", ["--methods", LONG_CHANGE], "need --encoder"),
        ("change_loco.py", ["--methods", LONG_CHANGE, "--encoder", str(SHIPPED)],
         UNFINISHED),
        ("change_loco.py", ["--methods", "geobert (MIM)", "--encoder", str(SHIPPED)],
         "--encoder is for"),
        ("landcover_strips.py", ["--recipes", LONG_LANDCOVER, "geobert (MIM)"],
         "on their own, with --encoder"),
        ("landcover_strips.py", ["--recipes", LONG_LANDCOVER, "--encoder", str(SHIPPED)],
         UNFINISHED),
        ("landcover_strips.py", ["--final", LONG_LANDCOVER], "need --encoder"),
        ("change_loco.py", ["--methods", LONG_CHANGE, "--encoder", "/nowhere.safetensors"],
         "--encoder /nowhere.safetensors:"),
        ("change_loco.py", ["--methods", BITEMPORAL, "--encoder", str(SHIPPED)],
         "was pretrained with simmim, not bitemporal"),
        ("change_loco.py", ["--methods", BITEMPORAL, LONG_CHANGE], "on their own, with --encoder"),
        ("change_loco.py", ["--methods", RELATIVE, "--encoder", str(SHIPPED)],
         "was pretrained with simmim, not bitemporal"),
        ("change_loco.py", ["--methods", BITEMPORAL, RELATIVE], "on their own, with --encoder"),
        ("change_loco.py", ["--methods", RELATIVE, RESIDUAL], "on their own, with --encoder"),
        ("landcover_strips.py", ["--recipes", SCENE, "--encoder", str(SHIPPED)],
         "pretrained from random weights, not continued from one"),
        ("landcover_strips.py", ["--recipes", SCENE, LONG_LANDCOVER],
         "on their own, with --encoder"),
        ("landcover_strips.py", ["--recipes", SCENE, SCENE_3K], "on their own, with --encoder"),
    ],
)  # fmt: skip
def test_a_method_of_the_long_pretraining_needs_its_finished_encoder(
    script: str, args: list[str], says: str
) -> None:
    """An unfinished encoder is never scored (the protocol reads a cosine schedule at its end),
    and the shipped encoder's methods never run from another one by mistake."""
    proc = _run(script, *args)
    assert proc.returncode == 1 and says in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_change_rules_on_known_masks() -> None:
    """The post-processing rules of results/change_oscd/rules/PROTOCOL.md, against masks worked
    out by hand: 8-connected components, the sieve's area, hysteresis seeds, and the choice of
    parameters by pooled F1 on the validation cities."""
    import numpy as np

    pytest.importorskip("scipy")  # the baselines extra's scikit-learn brings it
    from geobert.change.train import CityArrays

    rules = _script("change_rules")
    choose, hysteresis, sieve, threshold = (rules.choose, rules.hysteresis, rules.sieve,
                                            rules.threshold)  # fmt: skip
    p = np.zeros((8, 8), np.float32)
    p[1, 1] = p[2, 2] = p[3, 3] = 0.9  # a diagonal of 3 px: one 8-connected component
    p[5:7, 4:7] = 0.6  # a block of 6 px, one pixel of it above 0.8
    p[6, 6] = 0.85
    p[0, 7] = 0.6  # a lone pixel that never reaches 0.8
    assert threshold(p, (0.5,)).sum() == 10
    assert sieve(p, (0.5, 4)).sum() == 6 and not sieve(p, (0.5, 4))[2, 2]  # the 3 px go
    assert sieve(p, (0.5, 3)).sum() == 9  # the diagonal stays, the lone pixel goes
    assert sieve(p, (0.5, 0)).sum() == 10
    kept = hysteresis(p, (0.8, 0.5))  # seeds above 0.8; grown over p > 0.4
    assert kept.sum() == 9 and not kept[0, 7] and kept[5, 4]
    truth = np.zeros((8, 8), np.uint8)
    truth[5:7, 4:7] = 1
    city = CityArrays("c", p[None], p[None], truth, np.ones((8, 8), bool))
    params, s = choose(sieve, [(0.5, 0), (0.5, 4), (0.5, 9)], [p], [city])
    assert params == (0.5, 4) and s.f1 == 1.0


def test_flipped_maps_are_flipped_back() -> None:
    """``change_loco.py --maps``' four-flip average equals the four flipped predictions flipped
    back by hand, for a model whose output depends on where a pixel is (a flip left unflipped,
    or no flip at all, gives another map)."""
    import numpy as np
    import torch

    from geobert.change.train import CityArrays, predict_city

    predict_city_flips = _script("change_loco").predict_city_flips

    class Skewed(torch.nn.Module):
        def predict(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
            h, w = before.shape[-2:]
            ramp = (
                torch.linspace(0, 1, w)[None, None, None, :]
                * torch.linspace(0, 1, h)[None, None, :, None]
            )
            return 0.5 * torch.sigmoid((after - before)[:, :1]) + 0.5 * ramp

    rng = np.random.default_rng(0)
    before = rng.normal(size=(2, 37, 53)).astype(np.float32)
    after = before.copy()
    after[:, 3:9, 40:50] += 2.0
    city = CityArrays("c", before, after, np.zeros((37, 53), np.uint8), np.ones((37, 53), bool))
    model = Skewed()

    def flipped(k: int) -> np.ndarray:  # predict on the city rotated by k × 90° twice
        ud, lr = k // 2, k % 2

        def f(a: np.ndarray) -> np.ndarray:
            return a[..., ::-1, :] if ud else a

        def g(a: np.ndarray) -> np.ndarray:
            return a[..., :, ::-1] if lr else a

        c = CityArrays("c", np.ascontiguousarray(g(f(before))), np.ascontiguousarray(g(f(after))),
                       city.label, city.valid)  # fmt: skip
        return np.asarray(g(f(predict_city(model, c))))

    by_hand = np.mean([flipped(k) for k in range(4)], axis=0)
    plain = predict_city(model, city)
    assert np.abs(by_hand - plain).max() > 0.1  # the flips matter for this model
    np.testing.assert_allclose(predict_city_flips(model, city), by_hand, atol=1e-6)
    np.testing.assert_allclose(predict_city_flips(model, city, plain), by_hand, atol=1e-6)


def test_change_rules_choose_on_validation_cities_only(tmp_path: Path) -> None:
    """The rules' parameters come from the fold's validation cities, never its test cities: here
    they favour different thresholds, and the oracle (the test city's own best) differs."""
    import json

    import numpy as np

    pytest.importorskip("scipy")
    from geobert.change.train import CityArrays

    rules = _script("change_rules")
    p = np.tile(np.array([0.1, 0.3, 0.5, 0.8, 0.9], np.float32), (5, 4))
    valid = np.ones(p.shape, bool)
    cities = {
        "v": CityArrays("v", p[None], p[None], (p >= 0.8).astype(np.uint8), valid),
        "t": CityArrays("t", p[None], p[None], (p >= 0.3).astype(np.uint8), valid),
    }
    (tmp_path / "runs").mkdir()
    (tmp_path / "maps").mkdir()
    fold = {"fold": 0, "test": ["t"], "validation": ["v"], "threshold": 0.5,
            "per_city": {"t": {"f1": 0.75}}}  # fmt: skip
    (tmp_path / "runs" / "fold0_mim_banddrop.json").write_text(json.dumps(fold))
    np.savez(tmp_path / "maps" / "fold0_mim_banddrop.npz", v=p, t=p, v__flips=p, t__flips=p)
    result = rules.evaluate(tmp_path, tmp_path / "maps", "mim_banddrop", cities)
    chosen = result["folds"][0]["rules"]
    assert chosen["threshold (plain)"]["params"] == [0.5]  # validation's first best
    assert chosen["threshold (plain)"]["per_city"]["t"]["f1"] == pytest.approx(2 / 3)
    assert chosen["oracle threshold (plain)"]["per_city"]["t"]["f1"] == 1.0
    assert result["folds"][0]["check"]["f1"]["t"] == [0.75, pytest.approx(2 / 3)]
    assert "| threshold (plain) |" in rules.table(result)


def test_change_rules_median_threshold_comes_from_the_other_folds(tmp_path: Path) -> None:
    """The post-hoc row "median of the other folds" scores each fold's test city at the threshold
    the other fold chose on its validation city — never its own fold's choice."""
    import json

    import numpy as np

    pytest.importorskip("scipy")
    from geobert.change.train import CityArrays

    rules = _script("change_rules")
    p = np.tile(np.array([0.1, 0.3, 0.5, 0.8, 0.9], np.float32), (5, 4))
    valid = np.ones(p.shape, bool)
    high, low = (p >= 0.8).astype(np.uint8), (p >= 0.3).astype(np.uint8)
    labels = {"v0": high, "t0": low, "v1": low, "t1": high}
    cities = {n: CityArrays(n, p[None], p[None], label, valid) for n, label in labels.items()}
    (tmp_path / "runs").mkdir()
    (tmp_path / "maps").mkdir()
    for k in (0, 1):
        fold = {"fold": k, "test": [f"t{k}"], "validation": [f"v{k}"], "threshold": 0.5,
                "per_city": {f"t{k}": {"f1": 0.5}}}  # fmt: skip
        (tmp_path / "runs" / f"fold{k}_mim_banddrop.json").write_text(json.dumps(fold))
        maps = {f"{c}{s}": p for c in (f"v{k}", f"t{k}") for s in ("", "__flips")}
        np.savez(tmp_path / "maps" / f"fold{k}_mim_banddrop.npz", **maps)  # type: ignore[arg-type]
    folds = rules.evaluate(tmp_path, tmp_path / "maps", "mim_banddrop", cities)["folds"]
    own = [f["rules"]["threshold (plain)"] for f in folds]
    assert [r["params"] for r in own] == [[0.5], [0.1]]
    assert own[0]["per_city"]["t0"]["f1"] == pytest.approx(2 / 3)
    median = [f["rules"][f"{rules.MEDIAN} (plain)"] for f in folds]
    assert [r["params"] for r in median] == [[0.1], [0.5]]
    assert median[0]["per_city"]["t0"]["f1"] == 1.0
    assert median[1]["per_city"]["t1"]["f1"] == 1.0
    assert f"| {rules.MEDIAN} (four flips) |" in rules.table({"folds": folds})


def test_change_ensemble_averages_the_seeds_maps(tmp_path: Path) -> None:
    """results/change_oscd/ensemble/PROTOCOL.md: two seeds whose maps each flag a different
    half of the unchanged pixels; their mean separates change cleanly, each alone cannot. The
    threshold comes from the fold's validation city (its test city's map sits lower, so the
    choice fails there while the oracle does not), the median row from the *other* fold's
    choice; the members must be other seeds of the same folds."""
    import json

    import numpy as np

    pytest.importorskip("scipy")
    from geobert.change.train import CityArrays

    ens = _script("change_ensemble")
    truth = np.zeros((4, 6), np.uint8)
    truth[:, ::3] = 1  # change in every third column, on both halves
    left = np.zeros((4, 6), bool)
    left[:, :3] = True

    def seed_map(seed: int, changed: float, high: float, low: float) -> np.ndarray:
        side = left if seed == 0 else ~left  # the unchanged pixels this seed flags
        return np.where(truth == 1, changed, np.where(side, high, low)).astype(np.float32)

    upper = [seed_map(s, 0.6, 0.7, 0.2) for s in (0, 1)]  # mean: change 0.6, the rest 0.45
    lower = [seed_map(s, 0.42, 0.52, 0.12) for s in (0, 1)]  # mean: change 0.42, the rest 0.32
    # fold 0 chooses on an upper map and is tested on a lower one; fold 1 on lower maps only
    layout = {0: {"v0": upper, "t0": lower}, 1: {"v1": lower, "t1": lower}}
    valid = np.ones(truth.shape, bool)
    cities = {n: CityArrays(n, truth[None] * 1.0, truth[None] * 1.0, truth, valid)
              for n in ("v0", "t0", "v1", "t1")}  # fmt: skip
    members = []
    for seed in (0, 1):
        out, mp = tmp_path / f"s{seed}", tmp_path / f"m{seed}"
        (out / "runs").mkdir(parents=True)
        mp.mkdir()
        for k, maps in layout.items():
            fold: dict[str, object] = {"fold": k, "test": [f"t{k}"], "validation": [f"v{k}"],
                                       "threshold": 0.5, "per_city": {}}  # fmt: skip
            if seed:  # seed 0's run predates train_seed in the fold JSON
                fold["train_seed"] = seed
            (out / "runs" / f"fold{k}_mim_banddrop.json").write_text(json.dumps(fold))
            arrays = {f"{c}{x}": m[seed] for c, m in maps.items() for x in ("", "__flips")}
            np.savez(mp / f"fold{k}_mim_banddrop.npz", **arrays)  # type: ignore[arg-type]
        members.append((out, mp))
    result = ens.evaluate(members, "mim_banddrop", cities)
    assert result["seeds"] == [0, 1]
    f0, f1 = (f["rules"] for f in result["folds"])
    both = "mean of 2 seeds"
    assert f1[f"{both} (plain)"]["params"] == [0.35]  # the lower maps' first clean cut
    assert f1[f"{both} (plain)"]["per_city"]["t1"]["f1"] == 1.0
    assert f0[f"{both} (plain)"]["params"] == [0.45]  # chosen on v0, where 0.42 is unchanged
    assert f0[f"{both} (plain)"]["per_city"]["t0"]["f1"] == 0.0
    assert f0[f"oracle threshold, {both} (plain)"]["per_city"]["t0"]["f1"] == 1.0
    median = f0[f"{both}, median of the other folds (plain)"]
    assert median["params"] == [0.35] and median["per_city"]["t0"]["f1"] == 1.0
    for seed in (0, 1):  # one seed alone flags half the unchanged pixels with the change
        assert f1[f"seed {seed} (plain)"]["per_city"]["t1"]["f1"] < 0.8
    assert f"| {both}, median of the other folds (four flips) |" in ens.table(result)
    with pytest.raises(SystemExit, match="same seed"):
        ens.evaluate([members[0], members[0]], "mim_banddrop", cities)
    mixed = members[1][0] / "runs" / "fold1_mim_banddrop.json"
    mixed.write_text(json.dumps({**json.loads(mixed.read_text()), "train_seed": 2}))
    with pytest.raises(SystemExit, match="different seeds"):
        ens.evaluate(members, "mim_banddrop", cities)


@pytest.mark.parametrize(
    ("method", "arch", "init"),
    [
        ("geobert (MIM, band dropout)", "changenet", "mim"),
        ("geobert (scratch, band dropout)", "changenet", "scratch"),
        ("FC-Siam-diff", "fcsiamdiff", "scratch"),
    ],
)
def test_change_final_trains_the_method_its_folds_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, arch: str, init: str
) -> None:
    """`change_loco.py --final METHOD` trains METHOD's own network and initialisation (it once
    started every method from the MIM encoder), with the step most folds chose, the median
    threshold, the seed it is given, and names the folder its folds came from."""
    import json
    from types import SimpleNamespace

    loco = _script("change_loco")
    runs = tmp_path / "folds" / "runs"
    runs.mkdir(parents=True)
    for k, (step, thr) in enumerate([(525, 0.9), (700, 0.5), (525, 0.95), (350, 0.2), (700, 0.8)]):
        (runs / f"fold{k}_{loco.SLUG[method]}.json").write_text(
            json.dumps({"chosen_step": step, "threshold": thr})
        )
    seen: dict[str, Any] = {}

    def fake_train(train: Any, val: Any, encoder: Path, cfg: Any) -> tuple[None, Any]:
        seen["cfg"] = cfg
        return None, SimpleNamespace(band_sets=None, training={})

    monkeypatch.setattr(loco, "train_change", fake_train)
    monkeypatch.setattr(loco, "save_checkpoint", lambda *a: None)
    cities = {c: None for c in loco.CITIES}
    dest = loco.train_final(cities, tmp_path / "folds", tmp_path, 3, method, SHIPPED)
    cfg = seen["cfg"]
    assert (cfg.arch, cfg.init, cfg.seed) == (arch, init, 3)
    assert (cfg.steps, cfg.threshold) == (700, 0.8)  # a 525/700 tie goes to the larger
    assert cfg.band_dropout == loco.BAND_DROPOUT.get(method, 0.0)
    assert str(tmp_path / "folds") in cfg.extra["protocol"]
    assert dest.name == f"final_{loco.SLUG[method]}_all_cities.safetensors"


def test_band_set_scores_quote_each_set_against_all_bands_and_the_results_folder() -> None:
    """The model cards' band-set sentences (`geobert change` / `classify` quote them): each
    set's mean against the 13-band mean, and the folder the protocol's results are in."""
    loco, strips = _script("change_loco"), _script("landcover_strips")
    runs = [
        {"per_city": {"a": {"f1": 0.4}}, "per_band_set": {"s2-10m": {"a": {"f1": 0.2}}}},
        {"per_city": {"b": {"f1": 0.6}}, "per_band_set": {"s2-10m": {"b": {"f1": 0.4}}}},
    ]
    assert loco.band_set_scores(runs, Path("results/x")) == {
        "s2-10m": "mean change F1 0.300 over 2 cities left out of training, against 0.500 "
        "with all 13 bands (results/x)"
    }
    r = "geobert (MIM, pixel path, band dropout)"
    folds = [
        {"methods": {r: {"macro_f1": f}}, "band_sets": {r: {"s2-l2a": {"macro_f1": f - 0.1}}}}
        for f in (0.3, 0.5)
    ]
    assert strips.band_set_scores(folds, r, Path("results/y")) == {
        "s2-l2a": "mean macro-F1 0.300 over 2 strips away from the training polygons, against "
        "0.400 with all 13 bands (results/y)"
    }


def test_train_landcovers_scene_adaptation_is_the_protocols() -> None:
    """``train-landcover``'s adaptation stage (SceneAdaptConfig) runs what
    scripts/landcover_scene_mim.sh ran for results/landcover_bb/scene_mim: the same steps,
    windows, rate, warm-up and seed."""
    import shlex

    from geobert.landcover.adapt import SceneAdaptConfig

    cfg = SceneAdaptConfig()
    assert cfg.steps == _script("protocol_encoder").SCENE_STEPS
    text = (ROOT / "scripts" / "landcover_scene_mim.sh").read_text()
    call = text[text.index("geobert pretrain") :].split("${RESUME")[0].replace("\\\n", " ")
    words = shlex.split(call)
    opts = dict(zip(words[2::2], words[3::2], strict=False))
    assert opts["--steps"] == '"$STEPS"' or opts["--steps"] == "$STEPS"
    assert float(opts["--lr"]) == cfg.lr and int(opts["--warmup"]) == cfg.warmup_steps
    assert int(opts["--batch-size"]) == cfg.batch_size
    assert int(opts["--accum"]) == cfg.accum_steps
    assert int(opts["--window"]) == cfg.window_px and int(opts["--seed"]) == cfg.seed


def test_steps_done_reads_the_card_and_is_zero_before_the_first_checkpoint(
    tmp_path: Path,
) -> None:
    """What the resumable scripts (pretrain_long.sh, landcover_scene_mim.sh,
    pretrain_bitemporal.sh) compare with their schedule."""

    def steps(path: Path) -> str:
        cmd = [sys.executable, str(ROOT / "scripts" / "steps_done.py"), str(path)]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    assert steps(SHIPPED) == str(read_card(SHIPPED).training["steps_done"])
    assert steps(tmp_path / "not_yet.safetensors") == "0"
    for script in ("pretrain_long.sh", "landcover_scene_mim.sh", "pretrain_bitemporal.sh"):
        assert "scripts/steps_done.py" in (ROOT / "scripts" / script).read_text(), script


def test_the_longer_adaptation_changes_the_encoder_only(tmp_path: Path) -> None:
    """results/landcover_bb/scene_mim_3k: the shipped recipe's configs, seeds 0 and 1, from an
    encoder with 3 000 adaptation steps; the script runs recipes that exist, and its gate reads
    the unrounded mean of five strips, and says so while one is missing."""
    import json

    strips, enc = _script("landcover_strips"), _script("protocol_encoder")
    for seed_1 in ("", ", seed 1"):
        one_k = strips.RECIPES[SCENE.replace(")", f"{seed_1})")]
        assert strips.RECIPES[SCENE_3K.replace(")", f"{seed_1})")] == one_k
    assert strips.OTHER_ENCODER[SCENE_3K] == enc.SCENE._replace(steps=3000)
    # the recipe names the script derives, from its own lines
    text = (ROOT / "scripts" / "landcover_scene_mim.sh").read_text()
    block = text[text.index('case "$VARIANT" in') : text.index("esac") + 4]
    r1 = next(line for line in text.splitlines() if line.startswith("R1="))
    for variant, recipe in (("1k", SCENE), ("3k", SCENE_3K)):
        shown = subprocess.run(["bash", "-c", f'VARIANT={variant}\n{block}\n{r1}\n'
                                'printf "%s\\n" "$R0" "$R1" "$RUN"'],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        r0, r1_name, run = shown.splitlines()
        assert (r0, r1_name) == (recipe, recipe.replace(")", ", seed 1)"))
        assert r1_name in strips.RECIPES and strips.OTHER_ENCODER[r0] == getattr(enc, run)
    mean = [sys.executable, str(ROOT / "scripts" / "strips_mean.py"), str(tmp_path), SCENE_3K]
    for k, f1 in enumerate([0.3, 0.4, 0.35, 0.25, 0.3799]):  # mean 0.33598: prints 0.3360
        (tmp_path / f"fold{k}.json").write_text(
            json.dumps({"methods": {SCENE_3K: {"macro_f1": f1}}})
        )
        proc = subprocess.run(mean, capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout.strip()) == ((0, "0.3360") if k == 4 else (1, ""))
        assert k == 4 or f"{k + 1} of the 5 strips of {SCENE_3K} are done" in proc.stderr
    gate = subprocess.run([*mean, "--gate", "0.336"], capture_output=True, text=True, timeout=60)
    assert (gate.returncode, gate.stdout.strip()) == (3, "0.3360")  # below, unrounded
    gate = subprocess.run([*mean, "--gate", "0.3359"], capture_output=True, text=True, timeout=60)
    assert gate.returncode == 0


@pytest.mark.parametrize(
    ("script", "change"),
    [
        # results/landcover_bb/scene_gce: another loss (q 0.7)
        ("landcover_gce.sh", {"loss": "gce", "gce_q": 0.7}),
        # results/landcover_bb/scene_radiometric: the change model's jitter on half the windows
        ("landcover_radiometric.sh", {"radiometric_aug": 0.5}),
    ],
)
def test_a_scene_lever_protocol_runs_the_shipped_recipe_with_one_change(
    script: str, change: dict[str, Any]
) -> None:
    """The one-lever protocols' scripts run recipes that exist — the shipped recipe's configs
    with that one change and nothing else, seeds 0 and 1, from the shipped recipe's adapted
    encoder (its SHA-256 checked), gated at 0.336 — named as ``evaluate-landcover`` names
    that recipe, into the folder of their protocol."""
    import re
    from dataclasses import replace

    from geobert.landcover.evaluate import recipe_name

    strips, enc = _script("landcover_strips"), _script("protocol_encoder")
    text = (ROOT / "scripts" / script).read_text()
    r0 = re.findall(r'^R0="([^"]+)"$', text, flags=re.M)[0]
    r1 = r0.replace(")", ", seed 1)")  # as scene_lever_strips.sh names seed 1
    for seed, name in enumerate((r0, r1)):
        shipped = strips.RECIPES[SCENE.replace(")", ", seed 1)") if seed else SCENE]
        assert strips.RECIPES[name] == replace(shipped, **change)
        assert strips.OTHER_ENCODER[name] is enc.SCENE
    assert recipe_name(strips.RECIPES[r0], scene_adapted=True) == r0
    assert r1 in strips.NOT_FOR_SHIPPING and r0 not in strips.NOT_FOR_SHIPPING
    call = re.search(
        r'^bash scripts/scene_lever_strips\.sh "\$\{1:-\.\./shared/data\}" '
        r'results/landcover_bb/(scene_\w+) *\\?\n? *"\$R0"( --any-build)?$',
        text,
        flags=re.M,
    )
    assert call is not None, text
    assert call[2] is None  # not paired: the shipped recipe's own encoder, its bits checked
    assert (ROOT / "results" / "landcover_bb" / call[1] / "PROTOCOL.md").exists()
    lever = (ROOT / "scripts" / "scene_lever_strips.sh").read_text()
    assert 'R1="${R0%)}, seed 1)"' in lever
    assert "results/landcover_bb/scene_mim/encoder.sha256" in lever and "--gate 0.336" in lever


def test_self_training_protocol_pairs_each_strip_with_its_first_stage(tmp_path: Path) -> None:
    """The self-training protocol (paired, by its amendment) runs the shipped recipe's configs
    with self-training added and nothing else, seeds 0 and 1, gated at 0.336, from the adapted
    encoder whatever its bits — but a finished one: without it, it says how to build it."""
    import re
    import shutil
    from dataclasses import replace

    from geobert.landcover.evaluate import recipe_name

    strips, enc = _script("landcover_strips"), _script("protocol_encoder")
    text = (ROOT / "scripts" / "landcover_selftrain.sh").read_text()
    r0 = re.findall(r'^R0="([^"]+)"$', text, flags=re.M)[0]
    for seed, name in enumerate((r0, r0.replace(")", ", seed 1)"))):
        shipped = strips.RECIPES[SCENE.replace(")", ", seed 1)") if seed else SCENE]
        change = {"self_train_steps": 400, "self_train_share": 0.2}
        assert strips.RECIPES[name] == replace(shipped, **change)
        assert strips.OTHER_ENCODER[name] is enc.SCENE
    assert recipe_name(strips.RECIPES[r0], scene_adapted=True) == r0
    assert (
        'bash scripts/scene_lever_strips.sh "${1:-../shared/data}" '
        'results/landcover_bb/scene_selftrain \\\n    "$R0" --any-build' in text
    )
    assert (ROOT / "results" / "landcover_bb" / "scene_selftrain" / "PROTOCOL.md").exists()
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    run = ["bash", str(tmp_path / "scripts" / "landcover_selftrain.sh"), "/nowhere"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "runs/landcover_scene_mim/geobert_s_mim_bb.safetensors is missing or unfinished; build "
        "it first: bash scripts/landcover_scene_mim.sh /nowhere"
    ]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_a_scene_lever_protocol_refuses_to_run_without_the_shipped_adapted_encoder(
    tmp_path: Path,
) -> None:
    """Without the scene-adapted encoder its SHA-256 names, the protocol says how to build it
    and trains nothing (run in a copy of the scripts, where no ``runs/`` exists)."""
    import shutil

    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    sha = tmp_path / "results" / "landcover_bb" / "scene_mim" / "encoder.sha256"
    sha.parent.mkdir(parents=True)
    shutil.copy(ROOT / "results" / "landcover_bb" / "scene_mim" / "encoder.sha256", sha)
    run = ["bash", str(tmp_path / "scripts" / "landcover_gce.sh"), "/nowhere"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "runs/landcover_scene_mim/geobert_s_mim_bb.safetensors is missing or not the shipped "
        "recipe's adapted encoder; build it first: bash scripts/landcover_scene_mim.sh /nowhere"
    ]
    assert not (tmp_path / "runs").exists()
    usage = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "scene_lever_strips.sh"), "/nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 2 and "usage: scene_lever_strips.sh" in usage.stderr
    unknown = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "scene_lever_strips.sh"), "/d", "/r", "R", "--any"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2 and "[--any-build]" in unknown.stderr
