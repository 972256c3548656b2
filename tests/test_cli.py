"""The `dctnet` console script: synth, weights, stylize (image, folder, bad files, no overwrite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dctnet.checkpoints import save_model
from dctnet.cli import main
from dctnet.data.decode import list_images, read_image, write_image
from dctnet.models.unet import UNetGenerator


def _model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = UNetGenerator(8, 1, 2)
    arch = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
    return save_model(tmp_path / "ttn.safetensors", net.state_dict(), "ttn", arch)


def test_synth_writes_the_four_folders(tmp_path: Path) -> None:
    assert main(["synth", str(tmp_path / "s"), "--size", "32", "--photos", "3", "--cartoons", "2", "--test", "2"]) == 0
    assert [len(list_images(tmp_path / "s" / d)) for d in ("photos", "cartoons", "test_photos", "test_cartoons")] == [3, 2, 2, 2]


def test_weights_lists_every_file(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "vgg19-dcbb9e9d.pth" in out and "MISSING" in out and str(tmp_path) in out


def test_stylize_folder_keeps_sizes_skips_bad_files_and_never_overwrites(tmp_path: Path, capsys) -> None:
    model = _model(tmp_path)
    write_image(tmp_path / "in" / "a.png", np.random.default_rng(0).integers(0, 255, (37, 50, 3), dtype=np.uint8))
    write_image(tmp_path / "in" / "b.jpg", np.full((16, 16, 3), 90, np.uint8))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["stylize", str(tmp_path / "in"), "--model", str(model), "--output", str(tmp_path / "out")]) == 0
    assert read_image(tmp_path / "out" / "a.png").shape == (37, 50, 3)
    assert read_image(tmp_path / "out" / "b.png").shape == (16, 16, 3)
    out = capsys.readouterr().out
    assert "2 stylized, 1 skipped" in out and "broken.png" in out
    before = (tmp_path / "out" / "a.png").read_bytes()
    write_image(tmp_path / "out" / "a.png", np.zeros((4, 4, 3), np.uint8))
    main(["stylize", str(tmp_path / "in"), "--model", str(model), "--output", str(tmp_path / "out")])
    assert read_image(tmp_path / "out" / "a.png").shape == (4, 4, 3)  # not overwritten without --overwrite
    main(["stylize", str(tmp_path / "in"), "--model", str(model), "--output", str(tmp_path / "out"), "--overwrite"])
    assert (tmp_path / "out" / "a.png").read_bytes() == before


def test_export_onnx_and_torchscript_match_pytorch(tmp_path: Path, capsys) -> None:
    import onnxruntime

    from dctnet.inference.export import export_model
    from dctnet.inference.stylize import load_stylizer

    model = _model(tmp_path)
    assert main(["export", "--model", str(model), "--format", "onnx"]) == 0
    assert "parity with PyTorch" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(model.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).integers(0, 255, (36, 52, 3), dtype=np.uint8)  # another size: dynamic axes
    x = (image.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]
    onnx_out = ((session.run(None, {"photo": x})[0][0].transpose(1, 2, 0) + 1) * 127.5).round()
    torch_out = load_stylizer(model, backend="torch")(image).astype(np.float64)
    assert np.abs(onnx_out - torch_out).max() <= 1
    path, worst = export_model(model, "torchscript")
    assert path.suffix == ".ts" and worst < 1e-3


def test_train_runs_the_whole_method_on_plain_folders_and_reuses_a_given_source(synthetic_root: Path, tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture) -> None:
    """`dctnet train`: stage 1 then stage 2 on two folders; with --source-checkpoint, no pretraining."""
    from conftest import tiny_overrides

    overrides = [o for o in tiny_overrides(synthetic_root, tmp_path) if not o.startswith(("run_dir=", "data.root="))]
    overrides += ["trainer.max_steps=2", "ttn.loss.face.kind=none"]
    folders = ["--photos", str(synthetic_root / "photos"), "--cartoons", str(synthetic_root / "cartoons")]
    assert main(["train", *folders, "--run-dir", str(tmp_path / "first"), *overrides]) == 0
    model = tmp_path / "first" / "ttn" / "ttn.safetensors"
    assert model.is_file() and list_images(tmp_path / "first" / "ccn" / "calibrated" / "kept")
    assert f"model: {model}" in capsys.readouterr().out

    source = tmp_path / "first" / "ccn" / "pretrain" / "ccn.safetensors"
    assert main(["train", *folders, "--run-dir", str(tmp_path / "second"), "--source-checkpoint", str(source),
                 "--init-from", str(model), *overrides]) == 0
    assert not (tmp_path / "second" / "ccn" / "pretrain").exists()  # G_src was given, not trained
    assert (tmp_path / "second" / "ttn" / "ttn.safetensors").is_file()


def test_train_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--photos", str(tmp_path / "nowhere"), "--cartoons", str(tmp_path)]) == 2
    assert "--photos" in capsys.readouterr().err
