"""The inference engine: every backend equals the eager NCHW reference, tiles bound what the network sees
without visible seams, batching changes nothing, and videos keep their audio when PyAV is there."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from dctnet.checkpoints import save_model
from dctnet.cli import main
from dctnet.data.decode import to_tensor, write_image
from dctnet.inference.backends import TorchBackend, load_backend, load_ttn
from dctnet.inference.stylize import Stylizer, stylize_folder
from dctnet.inference.tiling import tile_layout, tile_starts
from dctnet.models.unet import UNetGenerator


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = UNetGenerator(8, 1, 2)
    arch = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
    return save_model(tmp_path_factory.mktemp("model") / "ttn.safetensors", net.state_dict(), "ttn", arch)


def _photo(size: tuple[int, int] = (256, 320)) -> np.ndarray:
    return cv2.resize(skimage.data.astronaut(), size[::-1], interpolation=cv2.INTER_AREA)


def test_channels_last_and_onnxruntime_equal_the_eager_reference(model: Path) -> None:
    reference = TorchBackend(load_ttn(model), "cpu", channels_last=False)
    batch = torch.stack([to_tensor(_photo((64, 96))), to_tensor(_photo((64, 96))[::-1])])
    expected = reference(batch)
    for backend in (TorchBackend(load_ttn(model), "cpu", channels_last=True),
                    load_backend(model, "onnxruntime", "cpu")):
        difference = (backend(batch) - expected).abs().max().item()
        print(f"{backend.name}: max |difference| to eager NCHW = {difference:.2e}")
        assert difference < 1e-3, backend.name
    assert model.with_suffix(".onnx").is_file()  # exported beside the model on first use


def test_auto_backend_is_the_fastest_one_for_the_device(model: Path) -> None:
    # ONNX Runtime is 1.3-1.5x eager PyTorch on CPU (benchmarks/roofline.py), so it is the CPU default
    assert load_backend(model, "auto", "cpu").name.startswith("onnxruntime")
    assert load_backend(model, "torch", "cpu").name.startswith("torch (cpu")


class _Recording:
    """A backend wrapper that remembers the largest input it was given."""

    def __init__(self, backend) -> None:
        self.backend, self.stride, self.name, self.largest = backend, backend.stride, "recording", (0, 0)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, tuple(batch.shape[2:]))
        return self.backend(batch)


def test_tiles_bound_the_network_input_and_blend_without_seams(model: Path) -> None:
    photo = _photo((300, 420))
    whole = Stylizer(load_backend(model), tile=1024)(photo).astype(float)
    recording = _Recording(load_backend(model))
    tiled = Stylizer(recording, tile=128, overlap=32)(photo).astype(float)
    assert tiled.shape == photo.shape and max(recording.largest) <= 128
    difference = np.abs(tiled - whole).mean(-1)
    # Seams would show as differences concentrated on the tile borders; compare them with the rest.
    borders = np.zeros(difference.shape, bool)
    for start in tile_starts(300, 128, 32, 4)[1:]:
        borders[start - 2:start + 2] = True
    for start in tile_starts(420, 128, 32, 4)[1:]:
        borders[:, start - 2:start + 2] = True
    print(f"tiled vs whole image: mean |difference| {difference.mean():.2f} levels, "
          f"at tile borders {difference[borders].mean():.2f}, 99th percentile {np.percentile(difference, 99):.1f}")
    # measured: blended 0.04 / 0.13 at borders; pasting overlapped tiles unblended gives 0.24 / 1.16, no overlap 0.35 / 2.7
    assert difference.mean() < 0.2 and difference[borders].mean() < 0.5


@pytest.mark.parametrize("length,tile,overlap,stride", [(1000, 256, 64, 4), (1024, 512, 64, 4), (4096, 1024, 64, 4),
                                                        (300, 128, 32, 4), (129, 128, 8, 1)])
def test_tile_layout_covers_the_image_with_the_overlap_on_the_stride_grid(length, tile, overlap, stride) -> None:
    size, starts = tile_layout(length, tile, overlap, stride)
    assert size <= tile and size % stride == 0 and all(s % stride == 0 for s in starts)
    assert starts[0] == 0 and starts[-1] + size == length  # covered from edge to edge
    assert all(size - (b - a) >= overlap for a, b in zip(starts, starts[1:]))  # every seam has the overlap
    fewest = -(-(length - overlap) // (tile - overlap))
    assert len(starts) <= fewest + 1  # no more tiles than needed (+1 for the stride rounding)
    assert tile_layout(200, 256, 64) == (200, [0])


def test_batching_gives_the_same_images_as_one_at_a_time(model: Path, tmp_path: Path) -> None:
    photos = [_photo((64, 64)), _photo((64, 64))[:, ::-1], _photo((48, 80)), _photo((64, 64))[::-1]]
    for k, photo in enumerate(photos):
        write_image(tmp_path / "in" / f"{k}.png", photo)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    single = Stylizer(load_backend(model), batch_size=1)
    batched = Stylizer(load_backend(model), batch_size=3)
    report = stylize_folder(batched, tmp_path / "in", tmp_path / "out")
    assert len(report.done) == 4 and list(report.skipped) == [tmp_path / "in" / "broken.png"]
    for k, photo in enumerate(photos):
        out = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / f"{k}.png")), cv2.COLOR_BGR2RGB)
        assert np.abs(out.astype(int) - single(photo).astype(int)).max() <= 1


def test_half_precision_on_cpu_is_refused_with_a_reason(model: Path, capsys) -> None:
    assert main(["stylize", "x.png", "--model", str(model), "--output", "y.png", "--device", "cpu", "--half"]) == 2
    assert "--half is for CUDA" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV not installed (pip install -e .[video])")
def test_video_keeps_its_audio_track(model: Path, tmp_path: Path) -> None:
    import av

    source = tmp_path / "talk.mp4"
    with av.open(str(source), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for k in range(20):
            frame = np.full((48, 64, 3), 40, np.uint8)
            cv2.circle(frame, (10 + 2 * k, 24), 6, (200, 180, 40), -1)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
            for packet in audio.encode(chunk):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    out = tmp_path / "styled.mp4"
    assert main(["stylize", str(source), "--model", str(model), "--output", str(out)]) == 0
    with av.open(str(out)) as result:
        assert len(result.streams.audio) == 1 and result.streams.audio[0].codec_context.name == "aac"
        frames = sum(1 for _ in result.decode(video=0))
        result.seek(0)
        samples = sum(f.samples for f in result.decode(audio=0))
    assert frames == 20 and samples >= 30000  # all frames, and (nearly) the 2 s of sound
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styled.mp4", "talk.mp4"]  # no temporaries left


def test_training_sample_torch_and_onnx_stylize_run_one_ttn_module(model: Path) -> None:
    """The TTN as the training module samples it, the torch backend and ONNX Runtime agree on the same weights."""
    from dctnet.config import DiscriminatorConfig, FacePerceptionConfig, TTNConfig, TTNLossConfig, UNetConfig, config_node
    from dctnet.models.unet import TTN
    from dctnet.ttn.module import TTNModule

    ttn = load_ttn(model)
    assert isinstance(ttn, TTN) and ttn.arch()["guided_filter_radius"] == 1
    loss = config_node("ttn.loss", TTNLossConfig, vgg_pretrained=False, face=FacePerceptionConfig("none", 0.0))
    unet = config_node("ttn.model", UNetConfig, base_channels=8, num_residual=1, num_downsamples=2)
    discriminator = config_node("ttn.discriminator", DiscriminatorConfig, channels=[8, 8, 8])
    recipe = config_node("ttn", TTNConfig, model=unet, discriminator=discriminator, loss=loss, batch_size=2)
    module = TTNModule(recipe, "unused", 0)
    module.generator_ema.network.load_state_dict(ttn.network.state_dict())
    batch = torch.stack([to_tensor(_photo((64, 96))), to_tensor(_photo((64, 96))[::-1])])
    with torch.no_grad():
        trained = module.stylize(batch, ema=True).clamp(-1, 1)
    served = {"torch": TorchBackend(load_ttn(model), "cpu", channels_last=False)(batch),
              "onnxruntime": load_backend(model, "onnxruntime", "cpu")(batch)}
    for name, output in served.items():
        difference = (output - trained).abs().max().item()
        assert difference < 1e-5, f"{name}: {difference:.2e}"


def test_every_precision_keeps_size_and_range_and_auto_falls_back_to_fp32_without_parity(
        model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dctnet.inference import precision

    monkeypatch.setenv("DCTNET_CACHE", str(tmp_path / "cache"))
    batch = torch.stack([to_tensor(_photo((64, 96)))])
    for choice in ("fp32", "bf16", "int8", "auto"):
        out = load_backend(model, "auto", "cpu", precision=choice)(batch)
        assert out.shape == batch.shape and float(out.min()) >= -1 and float(out.max()) <= 1, choice
    fp32 = load_backend(model, "torch", "cpu")(batch)
    bf16 = load_backend(model, "torch", "cpu", precision="bf16")
    psnr, equal = precision.parity(fp32, bf16(batch))
    assert psnr > 30 and "bf16" in bf16.name  # bf16 really ran (not identical), and stays close
    int8 = load_backend(model, "onnxruntime", "cpu", precision="int8")
    psnr, equal = precision.parity(fp32, int8(batch))
    assert 20 < psnr < 200 and "int8" in int8.name  # quantised convolutions: close, but not the fp32 numbers
    assert (model.parent / "ttn.int8.onnx").is_file() and (model.parent / "ttn.int8.onnx.sha256").is_file()
    with pytest.raises(ValueError, match="int8 runs on ONNX Runtime"):
        load_backend(model, "torch", "cpu", precision="int8")
    monkeypatch.setattr(precision, "PSNR_MIN", 1000.0)  # a tolerance no reduced precision can meet
    monkeypatch.setenv("DCTNET_CACHE", str(tmp_path / "cache2"))
    chosen = load_backend(model, "auto", "cpu", precision="auto")
    assert "chose fp32" in chosen.name and "failed parity" in chosen.name
    assert "bf16 torch failed parity" in chosen.name and "int8 onnxruntime failed parity" in chosen.name
    assert "bf16" not in chosen.name.split("[")[0] and "int8" not in chosen.name.split("[")[0]
    cached = (tmp_path / "cache2" / "precision.json").read_text()
    assert '"choice": "fp32' in cached
