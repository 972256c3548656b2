"""int8 TTN for ONNX Runtime: static QDQ quantisation of the U-Net's convolutions, calibrated on real photos.

``--precision int8`` (or an ``auto`` candidate) runs this file. Only ``Conv`` nodes are quantised (per-channel
int8 weights, activations calibrated on scikit-image's photos at the probe size): they hold almost every
FLOP, while the output guided filter's box means and ``cov / (var + eps)`` would lose their meaning in 8 bits.
On CPUs with VNNI or AMX ONNX Runtime runs the quantised convolutions on the int8 units. Whether the result is
close enough to fp32 is measured, not assumed: ``auto`` keeps it only when it passes the parity check
(dctnet.inference.precision), so a style whose flat colours band in int8 falls back.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee")  # scikit-image's colour photos: a face, fur, objects


def calibration_batches(stride: int, size: int) -> list[np.ndarray]:
    """One [-1, 1] 1 x 3 x size x size array per calibration photo (size rounded down to the U-Net's stride)."""
    import cv2
    import skimage.data

    side = size // stride * stride
    batches = []
    for name in CALIBRATION_PHOTOS:
        image = cv2.resize(getattr(skimage.data, name)(), (side, side), interpolation=cv2.INTER_AREA)
        batches.append((image.astype(np.float32)[None].transpose(0, 3, 1, 2) / 127.5 - 1.0))
    return batches


def quantize_int8(fp32_onnx: Path, out: Path, stride: int, size: int = 256) -> Path:
    """Write the int8 (QDQ, per-channel Conv weights) version of ``fp32_onnx`` to ``out`` atomically."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration_batches(stride, size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"photo": batch}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        temporary, prepared = Path(work) / out.name, Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared))  # shape inference and graph fusions first (ORT's advice)
        quantize_static(str(prepared), str(temporary), Photos(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        temporary.replace(out)  # same folder: a rename, never a half-written file
    log.info("wrote the int8 ONNX model %s (Conv weights per channel, activations calibrated on %d photos)", out,
             len(CALIBRATION_PHOTOS))
    return out
