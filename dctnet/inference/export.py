"""Export a trained TTN (network + the guided-filter post-processing) to ONNX or TorchScript, with a
parity check against PyTorch that the command itself runs (max |difference| must stay below 1e-3).

Inputs are N x 3 x H x W in [-1, 1] with H and W multiples of the network stride (the stylizer pads);
height and width are dynamic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dctnet.inference.backends import load_ttn, stamp_export

PARITY_TOLERANCE = 1e-3


def _parity_inputs(stride: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, 16 * stride, 16 * stride, generator=generator) * 2 - 1,
            torch.rand(2, 3, 12 * stride, 20 * stride, generator=generator) * 2 - 1]


def export_model(model: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, float]:
    """Write the exported file; returns its path and the worst absolute difference to PyTorch."""
    module = load_ttn(model)  # the same TTN module training and the torch backend run
    out = Path(out) if out else Path(model).with_suffix(".onnx" if fmt == "onnx" else ".ts")
    example = _parity_inputs(module.stride)
    with torch.inference_mode():
        references = [module(x) for x in example]
    if fmt == "onnx":
        import onnxruntime

        torch.onnx.export(module, (example[0],), str(out), input_names=["photo"], output_names=["cartoon"],
                          dynamic_axes={"photo": {0: "batch", 2: "height", 3: "width"},
                                        "cartoon": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=17, dynamo=False)
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        outputs = [session.run(None, {"photo": x.numpy()})[0] for x in example]
    elif fmt == "torchscript":
        with torch.inference_mode():
            traced = torch.jit.trace(module, example[0], check_trace=False)
        traced.save(str(out))
        loaded = torch.jit.load(str(out))
        with torch.inference_mode():
            outputs = [loaded(x).numpy() for x in example]
    else:
        raise ValueError(f"format must be onnx or torchscript, got {fmt!r}")
    worst = max(float(np.abs(o - r.numpy()).max()) for o, r in zip(outputs, references))
    if not np.isfinite(worst) or worst > PARITY_TOLERANCE:  # NaN compares False: check it explicitly
        raise RuntimeError(f"{fmt} export of {model} differs from PyTorch by {worst:.2e} > {PARITY_TOLERANCE}")
    stamp_export(out, Path(model))  # <out>.sha256: the model this export is of, by content
    return out, worst
