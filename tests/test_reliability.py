"""Reliability: no silent wrong model, no output lost or overwritten."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_config, tiny_overrides

from dctnet.checkpoints import load_model_file, save_model
from dctnet.data.decode import read_image, write_image
from dctnet.data.synthetic import ensure_dataset
from dctnet.inference.backends import TorchBackend, load_backend, load_ttn
from dctnet.inference.stylize import stylize_folder
from dctnet.gan_base import STEPS_PER_ITERATION
from dctnet.models.unet import UNetGenerator
from dctnet.training import AtomicCheckpointIO, remove_interrupted_writes
from dctnet.ttn.train import train_ttn


def test_a_replaced_model_with_an_older_date_is_not_served_from_a_stale_onnx_export(tmp_path: Path) -> None:
    """The ONNX cache is keyed on the model's content: ``cp -p`` of another model over it re-exports."""
    arch = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(save_model(tmp_path / f"m{seed}" / "ttn.safetensors", UNetGenerator(8, 1, 2).state_dict(),
                                 "ttn", arch))
    target = tmp_path / "serve" / "ttn.safetensors"
    target.parent.mkdir()
    target.write_bytes(models[0].read_bytes())
    photo = torch.rand(1, 3, 32, 32) * 2 - 1
    load_backend(target, "onnxruntime", "cpu")(photo)  # exports target.onnx for model 0
    target.write_bytes(models[1].read_bytes())
    os.utime(target, (1_000_000, 1_000_000))  # an older date than the export, as cp -p leaves it
    served = load_backend(target, "onnxruntime", "cpu")(photo)
    expected = TorchBackend(load_ttn(models[1]), "cpu", channels_last=False)(photo)
    assert (served - expected).abs().max() < 1e-3


def test_inputs_with_the_same_stem_get_distinct_outputs_and_the_count_matches_the_files(tmp_path: Path) -> None:
    source = tmp_path / "in"
    for name in ("a.jpg", "a.png", "b.png"):
        write_image(source / name, np.full((16, 16, 3), 100, np.uint8))
    report = stylize_folder(lambda image: 255 - image, source, tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a_jpg.png", "a_png.png", "b.png"] and len(report.done) == len(written) == 3


def test_a_checkpoint_write_killed_midway_keeps_the_previous_file_and_leaves_nothing_in_tmpdir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file sits beside its target (one filesystem, a rename), never in $TMPDIR."""
    other_tmp = tmp_path / "elsewhere"
    other_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(other_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    target = tmp_path / "checkpoints" / "last.ckpt"
    target.parent.mkdir()
    io = AtomicCheckpointIO()
    io.save_checkpoint({"iteration": torch.tensor(1)}, target)

    def killed(obj, file, *args, **kwargs) -> None:
        Path(file).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt  # the process dies during the write

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"iteration": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["iteration"] == 1
    assert list(other_tmp.iterdir()) == [] and sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    leftover = target.parent / ".last.abc.ckpt"  # what a SIGKILL (no finally) would leave
    leftover.write_bytes(b"x")
    remove_interrupted_writes(target.parent)
    assert not leftover.exists() and target.exists()


def test_a_rerun_with_another_checkpoint_period_resumes_from_last_ckpt(synthetic_root: Path, tmp_path: Path) -> None:
    common = tiny_overrides(synthetic_root, tmp_path)
    train_ttn(make_config("ttn", common + ["trainer.max_steps=3", "trainer.checkpoint_every=3"]))
    path = train_ttn(make_config("ttn", common + ["trainer.max_steps=5", "trainer.checkpoint_every=2"]))
    names = sorted(p.name for p in (tmp_path / "ttn" / "checkpoints").iterdir())
    assert "last-v1.ckpt" not in names and "last.ckpt" in names
    checkpoint = torch.load(tmp_path / "ttn" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4 * STEPS_PER_ITERATION  # the second run's own save (every 2), not 3
    assert load_model_file(path, kind="ttn")[1]["iterations"] == 5


def test_synthetic_data_with_other_parameters_is_kept_aside_never_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    ensure_dataset(root, size=32, photos=2, cartoons=2, test=1, seed=0)
    first = (root / "photos" / "00000.png").read_bytes()
    ensure_dataset(root, size=48, photos=2, cartoons=2, test=1, seed=0)  # e.g. data.size changed
    assert read_image(root / "photos" / "00000.png").shape == (48, 48, 3)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("synthetic.")]
    assert len(aside) == 1 and (aside[0] / "photos" / "00000.png").read_bytes() == first
    user = tmp_path / "mine"
    write_image(user / "photos" / "holiday.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileExistsError, match="did not write"):
        ensure_dataset(user, size=32, photos=2, cartoons=2, test=1, seed=0)
    assert (user / "photos" / "holiday.png").is_file()


def test_export_parity_check_fails_on_nan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dctnet.inference import export

    arch = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
    model = save_model(tmp_path / "ttn.safetensors", UNetGenerator(8, 1, 2).state_dict(), "ttn", arch)
    # an exported file whose outputs are NaN (as a broken runtime or model would give)
    monkeypatch.setattr(export.torch.jit, "load", lambda path: (lambda x: torch.full_like(x, float("nan"))))
    with pytest.raises(RuntimeError, match="differs from PyTorch by nan"):
        export.export_model(model, "torchscript", tmp_path / "ttn.ts")


@pytest.mark.parametrize("override, message", [
    ("ttn.batch_size=0", "ttn.batch_size must be >= 1"),
    ("trainer.max_steps=-1", "iterations must be >= 0"),
    ("ttn.optimizer.betas=[0.5]", "ttn.optimizer.betas must be two numbers"),
])
def test_impossible_settings_are_clear_errors(synthetic_root: Path, tmp_path: Path, override: str,
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + [override]))


def test_an_appended_unknown_key_is_refused_like_a_misspelt_one(synthetic_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown config key 'ttn.unknwon'"):
        train_ttn(make_config("ttn", tiny_overrides(synthetic_root, tmp_path) + ["+ttn.unknwon=3"]))


def test_a_gif_stylizes_as_its_first_frame_and_a_one_image_folder_warns(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    from PIL import Image

    from dctnet.data.folders import ImageFolder

    (tmp_path / "in").mkdir()
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "in" / "anim.gif", save_all=True, append_images=frames[1:])
    report = stylize_folder(lambda image: image, tmp_path / "in", tmp_path / "out")
    assert [p.name for p in report.done] == ["anim.png"]
    assert read_image(tmp_path / "out" / "anim.png")[0, 0, 0] > 150  # the first (red) frame
    with caplog.at_level("WARNING"):
        ImageFolder(tmp_path / "in", 16)
    assert "a single usable image" in caplog.text


@pytest.mark.parametrize("header, message", [
    ('{"format_version": "1", "kind": "ttn", "arch": {}}', "arch must give base_channels"),
    ('{"format_version": "1", "kind": "ttn", "arch": ', "not valid JSON"),
])
def test_a_model_with_a_broken_header_is_a_clear_error_naming_the_file(tmp_path: Path, capsys, header: str,
                                                                      message: str) -> None:
    from safetensors.torch import save_file

    from dctnet.cli import main

    model = tmp_path / "broken.safetensors"
    save_file(UNetGenerator(8, 1, 2).state_dict(), str(model), metadata={"dctnet": header})
    write_image(tmp_path / "photo.png", np.zeros((32, 32, 3), np.uint8))
    code = main(["stylize", str(tmp_path / "photo.png"), "--model", str(model), "--output", str(tmp_path / "o.png")])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "broken.safetensors" in error


def test_a_rerun_with_a_changed_recipe_is_refused_with_the_diff_unless_forced(synthetic_root: Path,
                                                                             tmp_path: Path) -> None:
    common = tiny_overrides(synthetic_root, tmp_path)
    train_ttn(make_config("ttn", common + ["trainer.max_steps=2"]))
    with pytest.raises(ValueError, match=r"another config(.|\n)*ttn.lr_g: 0.0002 -> 0.0005(.|\n)*resume=force"):
        train_ttn(make_config("ttn", common + ["trainer.max_steps=4", "ttn.lr_g=5e-4"]))
    path = train_ttn(make_config("ttn", common + ["trainer.max_steps=4", "ttn.lr_g=5e-4", "resume=force"]))
    assert load_model_file(path, kind="ttn")[1]["iterations"] == 4
    assert "lr_g: 0.0005" in (tmp_path / "ttn" / "config.yaml").read_text()


def _model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    arch = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
    return save_model(tmp_path / "ttn.safetensors", UNetGenerator(8, 1, 2).state_dict(), "ttn", arch)


def _clip(path: Path, frames: int = 20) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(frames):
        frame = np.full((48, 64, 3), 40, np.uint8)
        cv2.circle(frame, (10 + 2 * k, 24), 6, (200, 180, 40), -1)
        writer.write(frame)
    writer.release()
    return path


def test_a_truncated_video_warns_and_a_corrupt_one_is_a_clear_error(tmp_path: Path, capsys,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from dctnet.cli import main

    model = _model(tmp_path)
    clip = _clip(tmp_path / "clip.avi")
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) * 6 // 10])
    with caplog.at_level("WARNING"):
        assert main(["stylize", str(truncated), "--model", str(model), "--output", str(tmp_path / "t.mp4")]) == 0
    assert "could be decoded (truncated or damaged)" in caplog.text
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(4096))
    capsys.readouterr()
    assert main(["stylize", str(corrupt), "--model", str(model), "--output", str(tmp_path / "c.mp4")]) == 2
    assert "corrupt.mp4" in capsys.readouterr().err and not (tmp_path / "c.mp4").exists()


def test_symlink_loops_and_dangling_links_are_skipped_and_counted(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "good.png", np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "in" / "loop.png").symlink_to(tmp_path / "in" / "loop.png")
    (tmp_path / "in" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with caplog.at_level("WARNING"):
        report = stylize_folder(lambda image: image, tmp_path / "in", tmp_path / "out")
    assert [p.name for p in report.done] == ["good.png"]
    assert sorted(p.name for p in report.skipped) == ["gone.jpg", "loop.png"]
    assert "skipping 2 entries that are not readable files" in caplog.text


def test_an_unwritable_output_location_is_one_clear_error_before_any_work(tmp_path: Path, capsys) -> None:
    from dctnet.cli import main

    write_image(tmp_path / "in" / "photo.png", np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "file").write_text("a file, not a folder")  # as root, chmod cannot make a folder read-only
    for target in (tmp_path / "file" / "out", tmp_path / "file" / "out" / "o.png"):
        source = tmp_path / "in" if target.suffix == "" else tmp_path / "in" / "photo.png"
        code = main(["stylize", str(source), "--model", str(_model(tmp_path)), "--output", str(target)])
        error = capsys.readouterr().err
        assert code == 2 and "cannot write outputs to" in error and str(tmp_path / "file") in error


def test_a_folder_with_nothing_usable_says_so_and_fails(tmp_path: Path, capsys) -> None:
    from dctnet.cli import main

    model = _model(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "broken.png").write_bytes(b"not a png")
    for folder in ("empty", "junk"):
        assert main(["stylize", str(tmp_path / folder), "--model", str(model), "--output", str(tmp_path / "o")]) == 1
        assert f"nothing stylized: no usable image in {tmp_path / folder}" in capsys.readouterr().err
    write_image(tmp_path / "good" / "a.png", np.zeros((32, 32, 3), np.uint8))
    assert main(["stylize", str(tmp_path / "good"), "--model", str(model), "--output", str(tmp_path / "g")]) == 0
    again = main(["stylize", str(tmp_path / "good"), "--model", str(model), "--output", str(tmp_path / "g")])
    assert again == 0  # outputs kept from the first run are not a failure


def test_resuming_pretraining_ignores_adaptation_keys_but_not_its_own(synthetic_root: Path, tmp_path: Path) -> None:
    """A long G_src pretraining continues after adaptation or sampling keys changed (it reads neither), and is
    still refused when a pretraining key changed."""
    from dctnet.ccn.train import train_ccn

    common = tiny_overrides(synthetic_root, tmp_path) + ["ccn.stages=[pretrain]"]
    train_ccn(make_config("ccn", common + ["trainer.max_steps=2"]))
    later = ["ccn.adapt.lr=0.01", "ccn.adapt.self_similarity_weight=5", "ccn.pretrain.self_similarity_weight=5",
             "ccn.sampling.count=7", "ccn.stages=[pretrain,adapt]", "cyclegan.ngf=8", "ttn.lr_g=0.01"]
    with pytest.raises(ValueError, match=r"another config(.|\n)*ccn.pretrain.lr"):
        train_ccn(make_config("ccn", common + ["trainer.max_steps=4", "ccn.pretrain.lr=0.01"]))
    outputs = train_ccn(make_config("ccn", common[:-1] + ["trainer.max_steps=4", "trainer.checkpoint_every=2"] + later))
    checkpoint = torch.load(tmp_path / "ccn" / "pretrain" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4 * STEPS_PER_ITERATION and "pretrain" in outputs
