from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geobert.errors import OutputExistsError
from geobert.models import create_model, save_checkpoint
from geobert.models.onnx import ONNX_TOLERANCE, export_onnx
from tests.geobert.test_encoder import S2, _card

pytestmark = pytest.mark.slow


def test_onnx_export_matches_torch_for_any_batch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = create_model("geobert_s", bands=S2).eval()
    ckpt = save_checkpoint(model, _card(model, tile_size_px=64), tmp_path / "enc.safetensors")
    out = tmp_path / "enc.onnx"
    diff = export_onnx(ckpt, out)
    assert diff <= ONNX_TOLERANCE
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["f4", "f8", "f16", "f32"]
    x = torch.randn(5, 13, 64, 64)  # a batch size the export never saw
    got = sess.run(None, {"bands": x.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= ONNX_TOLERANCE
    with pytest.raises(OutputExistsError):
        export_onnx(ckpt, out)
