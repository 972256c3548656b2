"""Import of the released DCT-Net graphs (ModelScope's frozen TF1 .pb): exact numerics, every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tfgraph import official_weights, run_graph, write_official_graph

from dctnet.checkpoints import CheckpointError
from dctnet.cli import main
from dctnet.data.decode import read_image, write_image
from dctnet.inference.backends import load_ttn
from dctnet.models.official_import import convert_official_graph
from dctnet.models.unet import TTN


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_graph(tmp_path_factory.mktemp("official") / "cartoon_test_h.pb", official_weights())


def _photo(height: int = 36, width: int = 44) -> np.ndarray:
    """An RGB uint8 photo-like image (smooth gradients plus texture)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([yy, xx, 1 - yy * xx], -1) * 200 + rng.normal(0, 12, (height, width, 3))
    return base.clip(0, 255).astype(np.uint8)


def _ttn_output(ttn: TTN, rgb: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb).float().permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        return ttn(x)[0].permute(1, 2, 0).double().numpy()


def test_imported_graph_equals_a_numpy_execution_of_the_graph(graph: Path) -> None:
    rgb = _photo()
    expected = run_graph(graph, rgb[:, :, ::-1].astype(np.float32), fetch="clip_by_value")[:, :, ::-1]  # BGR in/out
    ttn = convert_official_graph(graph)
    assert ttn.tf_numerics and ttn.guided_filter_radius == 1 and ttn.guided_filter_eps == pytest.approx(1e-2)
    got = _ttn_output(ttn, rgb).clip(-0.999999, 0.999999)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(expected).mean() > 0.1  # a non-trivial output, not a constant

    # The TF numerics are what makes it exact: the same weights with PyTorch's padding/resize/border differ.
    plain = TTN(8, 2, 2)
    plain.network.load_state_dict(ttn.network.state_dict())
    assert np.abs(_ttn_output(plain.eval(), rgb).clip(-1, 1) - expected).max() > 1e-2


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_imported_model_stylizes_in_every_backend_like_the_graph(graph: Path, tmp_path: Path, backend: str) -> None:
    model = tmp_path / "official" / "ttn.safetensors"
    assert main(["weights", "import", "dctnet-official", str(graph), "--output", str(model)]) == 0
    assert load_ttn(model).tf_numerics
    photo = _photo(40, 48)
    write_image(tmp_path / "photo.png", photo)
    out = tmp_path / f"out_{backend}.png"
    assert main(["stylize", str(tmp_path / "photo.png"), "--model", str(model), "--output", str(out),
                 "--backend", backend, "--precision", "fp32"]) == 0
    graph_rgb = run_graph(graph, photo[:, :, ::-1].astype(np.float32))[:, :, ::-1].astype(int)  # uint8, truncated
    # the graph truncates to uint8, dctnet rounds: at most one level apart
    assert np.abs(read_image(out).astype(int) - graph_rgb).max() <= 1


def test_a_graph_that_is_not_dctnet_is_refused_clearly(tmp_path: Path) -> None:
    weights = {k.replace("generator/Conv_9", "generator/Other"): v for k, v in official_weights().items()}
    path = write_official_graph(tmp_path / "other.pb", weights)
    with pytest.raises(CheckpointError, match="not a DCT-Net generator graph"):
        convert_official_graph(path)
    assert main(["weights", "import", "dctnet-official", str(tmp_path / "missing.pb"), "--output",
                 str(tmp_path / "x.safetensors")]) == 1
