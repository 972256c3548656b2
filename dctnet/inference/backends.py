"""Runtimes that evaluate a trained TTN (network + output guided filter) on a padded N x 3 x H x W batch in [-1, 1].

``TorchBackend``: inference mode, channels_last memory layout (faster oneDNN convolutions on CPU, tensor
cores on GPU) and, with ``half``, fp16 autocast on CUDA. ``OnnxBackend`` runs the file written by ``dctnet
export --format onnx`` in ONNX Runtime. ``auto`` (the default) picks the fastest for the device: ONNX Runtime
on CPU when it is installed, torch otherwise. Both return float32 CPU tensors; the tests hold every
backend to the eager NCHW reference within 1e-3.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from dctnet.atomic import write_text_atomic
from dctnet.checkpoints import CheckpointError, load_model_file, load_strict
from dctnet.models.unet import TTN

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime")


class Backend(Protocol):
    stride: int
    name: str

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; an explicit ``cuda`` without a GPU is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device (use --device auto or cpu)")
    return resolved


def load_ttn(path: str | Path) -> TTN:
    """The exported TTN (U-Net weights, output filter settings from the header), in eval mode."""
    state, header = load_model_file(path, kind="ttn")
    arch = header.get("arch")
    needed = ("base_channels", "num_residual", "num_downsamples")
    if not isinstance(arch, dict) or any(not isinstance(arch.get(key), int) for key in needed):
        raise CheckpointError(f"{path}: its header's arch must give {', '.join(needed)} as integers, got {arch!r}")
    known = set(needed) | {"output_guided_filter", "guided_filter_radius", "guided_filter_eps", "tf_numerics"}
    ttn = TTN(**{key: value for key, value in arch.items() if key in known})
    load_strict(ttn.network, state, str(path))
    return ttn.eval()


class TorchBackend:
    """Eager PyTorch. ``channels_last`` is on by default: same numbers, faster convolutions (benchmarks/roofline.py)."""

    def __init__(self, ttn: TTN, device: str | torch.device = "cpu", half: bool = False,
                 channels_last: bool = True, bf16: bool = False) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        if half and self.device.type != "cuda":
            raise ValueError("--half is for CUDA devices (fp16 on CPU is slower and less exact); drop it on CPU")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.ttn = ttn.eval().to(self.device, memory_format=self.memory_format)
        self.half, self.bf16, self.stride = half, bf16, ttn.stride
        numerics = ", fp16" if half else ", bf16 autocast" if bf16 else ""
        self.name = f"torch ({self.device.type}{numerics}{', channels_last' if channels_last else ''})"

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, memory_format=self.memory_format)
        if self.bf16:  # the U-Net in bf16 where the CPU/GPU has the units; the guided filter below stays fp32
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                raw = self.ttn.network(x)
        else:
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
                raw = self.ttn.network(x)
        return self.ttn.refine(x, raw).clamp(-1, 1).float().contiguous().cpu()  # the filter runs in fp32


class OnnxBackend:
    """ONNX Runtime on the file written by ``dctnet export --format onnx`` (dynamic batch, height and width)."""

    def __init__(self, onnx_path: str | Path, stride: int, device: torch.device | str = "cpu") -> None:
        import onnxruntime

        device = resolve_device(device) if isinstance(device, str) else device
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=providers)
        self.stride = stride
        self.name = f"onnxruntime ({self.session.get_providers()[0]})"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"photo": np.ascontiguousarray(batch.cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(out)


def fastest_backend(device: torch.device) -> str:
    """``auto``: ONNX Runtime on CPU when installed (1.3-1.5x eager PyTorch, benchmarks/roofline.py), else torch."""
    return "onnxruntime" if device.type == "cpu" and importlib.util.find_spec("onnxruntime") else "torch"


def model_digest(model: Path) -> str:
    """sha256 of the model file's bytes: what an export is keyed on."""
    return hashlib.sha256(Path(model).read_bytes()).hexdigest()


def _stamp(export: Path) -> Path:
    return export.with_name(export.name + ".sha256")


def export_source_digest(export: Path) -> str | None:
    """The content hash of the model ``export`` was made from (its ``.sha256`` stamp), or None."""
    stamp = _stamp(export)
    return stamp.read_text().strip() if stamp.is_file() else None


def stamp_export(export: Path, model: Path) -> None:
    """Record beside ``export`` which model (by content) it came from, atomically."""
    write_text_atomic(_stamp(export), model_digest(model) + "\n")


def _fresh(export: Path, model: Path) -> bool:
    """``export`` exists and its stamp names ``model``'s content hash (dates lie: ``cp -p`` keeps old ones)."""
    return export.is_file() and export_source_digest(export) == model_digest(model)


def onnx_beside(model: Path) -> Path:
    """Where the ONNX export of ``model`` lives: beside it, or in the user cache when that folder is read-only."""
    beside = model.with_suffix(".onnx")
    if _fresh(beside, model) or os.access(model.parent, os.W_OK):
        return beside
    return Path(os.path.expanduser("~/.cache/dctnet/onnx")) / f"{model.stem}-{model_digest(model)[:16]}.onnx"


def load_backend(model: str | Path, backend: str = "auto", device: str = "auto", half: bool = False,
                 precision: str = "fp32") -> Backend:
    """The TTN in ``model`` (ttn.safetensors) on ``backend``; ONNX files are exported (parity-checked) on first use.

    ``precision``: ``fp32``; ``bf16`` (torch autocast, guided filter in fp32); ``int8`` (ONNX Runtime on the
    statically quantised convolutions, dctnet.inference.quantize); ``auto`` measures the candidates the backend
    allows on this machine and keeps the fastest that matches fp32 (dctnet.inference.precision), else fp32.
    """
    from dctnet.inference import precision as numerics

    if precision not in numerics.PRECISIONS:
        raise ValueError(f"precision must be one of {numerics.PRECISIONS}, got {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    model = Path(model)
    resolved = resolve_device(device)
    ttn = load_ttn(model)
    if precision == "bf16":
        return TorchBackend(ttn, resolved, bf16=True)
    if precision == "int8":
        if backend == "torch" or half or resolved.type != "cpu" or not importlib.util.find_spec("onnxruntime"):
            raise ValueError("--precision int8 runs on ONNX Runtime's CPU provider: use --device cpu, no --half, "
                             "--backend auto or onnxruntime, with onnxruntime installed")
        return _int8_backend(model, ttn, resolved)
    candidates: dict[str, Callable[[], Backend]] = {}
    if precision == "auto" and not half:
        if backend != "onnxruntime":
            candidates["bf16 torch"] = lambda: TorchBackend(ttn, resolved, bf16=True)
        if backend != "torch" and resolved.type == "cpu" and importlib.util.find_spec("onnxruntime"):
            candidates["int8 onnxruntime"] = lambda: _int8_backend(model, ttn, resolved)
    if candidates:  # auto with something to measure against fp32
        fp32_name = backend if backend != "auto" else fastest_backend(resolved)
        key = (f"{model_digest(model)}:{resolved.type}:{numerics.cpu_features()}:{torch.__version__}:{fp32_name}:"
               + ",".join(candidates))
        fp32 = load_backend(model, fp32_name, device)
        choice, figures = numerics.choose(key, (f"fp32 {fp32_name}", fp32), candidates, ttn.stride)
        log.info(numerics.describe(choice, figures))
        chosen = candidates[choice]() if choice in candidates else fp32
        chosen.name += f" [{numerics.describe(choice, figures)}]"
        return chosen
    if backend == "auto":
        backend = "torch" if half else fastest_backend(resolved)
    if backend == "torch":
        return TorchBackend(ttn, resolved, half)
    if half:
        raise ValueError("--half applies to the torch backend on CUDA")
    return OnnxBackend(_onnx_file(model), ttn.stride, resolved)


def _onnx_file(model: Path) -> Path:
    """The fp32 ONNX export of ``model``, written (parity-checked) when missing or stale."""
    onnx_path = onnx_beside(model)
    if not _fresh(onnx_path, model):
        from dctnet.inference.export import export_model

        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        _, worst = export_model(model, "onnx", onnx_path)
        log.info("exported %s for ONNX Runtime (parity with PyTorch: max |difference| %.1e)", onnx_path, worst)
    return onnx_path


def _int8_backend(model: Path, ttn: TTN, device: torch.device) -> OnnxBackend:
    """ONNX Runtime on ``<model>.int8.onnx`` (quantised from the fp32 export when missing or stale)."""
    from dctnet.inference.quantize import quantize_int8

    fp32 = _onnx_file(model)
    int8 = fp32.with_name(f"{fp32.stem}.int8.onnx")
    if not _fresh(int8, model):
        try:
            quantize_int8(fp32, int8, ttn.stride)
        except Exception as error:  # an ONNX Runtime quantiser failure is a candidate that did not work
            raise RuntimeError(f"int8 quantisation of {fp32} failed: {error}") from error
        stamp_export(int8, model)
    backend = OnnxBackend(int8, ttn.stride, device)
    backend.name = f"int8 {backend.name}"
    return backend
