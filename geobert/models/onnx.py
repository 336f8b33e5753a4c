"""ONNX export of a geobert encoder (fixed tile size, dynamic batch), checked against torch."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from geobert.errors import GeobertError, OutputExistsError
from geobert.models.checkpoint import load_checkpoint
from geobert.models.encoder import GeobertEncoder

__all__ = ["ONNX_TOLERANCE", "export_onnx"]

ONNX_TOLERANCE = 1e-3
"""Largest absolute difference accepted between ONNX Runtime and torch features (fp32)."""


class _Features(torch.nn.Module):
    def __init__(self, encoder: GeobertEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.encoder.forward_features(x))


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tile_size_px: int | None = None,
    overwrite: bool = False,
) -> float:
    """Export the encoder in ``checkpoint`` to ``out``; return the max |onnx − torch| difference.

    Inputs are ``(batch, bands, tile, tile)`` float32 of normalised bands (see the model card);
    outputs ``f4, f8, f16, f32`` are the NCHW features at strides 4 to 32.

    Raises:
        GeobertError: the exported model disagrees with torch by more than :data:`ONNX_TOLERANCE`.
    """
    import onnxruntime as ort

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    encoder, card = load_checkpoint(checkpoint)
    assert isinstance(encoder, GeobertEncoder)
    size = tile_size_px or card.tile_size_px
    wrapped = _Features(encoder).eval()
    example = torch.randn(
        2, encoder.in_chans, size, size, generator=torch.Generator().manual_seed(0)
    )
    encoder.check_input(example)
    names = ["f4", "f8", "f16", "f32"]
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of torch.export, which needs the
            # extra onnxscript package and cannot trace timm's per-size attention masks with a
            # dynamic batch; the result is checked numerically below either way.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit._trace.TracerWarning)
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                input_names=["bands"],
                output_names=names,
                dynamic_axes={"bands": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                opset_version=17,
                dynamo=False,
            )
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        check = torch.randn(
            3, encoder.in_chans, size, size, generator=torch.Generator().manual_seed(1)
        )
        with torch.no_grad():
            want = [t.numpy() for t in wrapped(check)]
        got = sess.run(names, {"bands": check.numpy()})
        diff = max(float(np.abs(a - b).max()) for a, b in zip(got, want, strict=True))
        if diff > ONNX_TOLERANCE:
            raise GeobertError(
                f"the ONNX export differs from torch by {diff:.2e} (more than {ONNX_TOLERANCE}); "
                "nothing was written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return diff
