"""Regenerates docs/reliability.md: every bad input a user can give, run through the real code, with what they see.

    python scripts/reliability.py            # ~1 min on CPU; rewrites docs/reliability.md

Each probe builds its bad input in a temporary folder, calls the same entry point a user would (the ``dctnet``
CLI, the training drivers, the loaders) and records the outcome: the exit code or exception and the first line
of the message, plus warnings logged. Nothing is hard-coded: if a behaviour changes, the table changes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dctnet.checkpoints import save_model  # noqa: E402
from dctnet.cli import main as cli  # noqa: E402
from dctnet.data.decode import write_image  # noqa: E402
from dctnet.models.unet import UNetGenerator  # noqa: E402

ARCH = {"base_channels": 8, "num_residual": 1, "num_downsamples": 2, "output_guided_filter": True}
PROBES: list[tuple[str, str, Callable[[Path], object]]] = []


def probe(group: str, case: str):
    def register(function: Callable[[Path], object]) -> Callable[[Path], object]:
        PROBES.append((group, case, function))
        return function
    return register


class Payload:
    """Unpickling this creates the marker file: the proof that a loader ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def model(tmp: Path, name: str = "ttn.safetensors") -> Path:
    torch.manual_seed(0)
    return save_model(tmp / name, UNetGenerator(8, 1, 2).state_dict(), "ttn", ARCH)


def photo(path: Path, size: int = 32) -> Path:
    write_image(path, np.full((size, size, 3), 120, np.uint8))
    return path


def stylize(*args: str) -> int:
    return cli(["stylize", *map(str, args)])


def pickle_file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "payload": Payload(tmp / "pwned")}, path)
    return path


def tiny_config(tmp: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from dctnet.config import register_configs
    from dctnet.data.synthetic import ensure_dataset

    register_configs()
    root = ensure_dataset(tmp / "data", size=32, photos=16, cartoons=8, test=4, seed=0)
    base = [f"data.root={root}", "data.size=32", "data.synthetic.generate=false", f"run_dir={tmp / 'run'}",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "ttn/model=unet_tiny", "ttn.batch_size=2",
            "ttn.loss.vgg_pretrained=false", "ttn.discriminator.channels=[8,8,8]", "trainer.max_steps=1",
            "identity.pretrained=false"]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose(config_name="ttn", overrides=[*base, *overrides])


# ---- weight and checkpoint files ---------------------------------------------------------------------------
@probe("weight files", "a crafted pickle renamed `ttn.safetensors`, given to `dctnet stylize`")
def _(tmp: Path):
    return stylize(photo(tmp / "p.png"), "--model", pickle_file(tmp, "ttn.safetensors"), "--output", tmp / "o.png")


@probe("weight files", "a crafted pickle as `ccn.source_checkpoint` (.pt), with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1")
def _(tmp: Path):
    from dctnet.ccn.source import load_source
    from dctnet.config import StyleGANConfig, config_node

    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        load_source(pickle_file(tmp, "g.pt"), config_node("ccn.model", StyleGANConfig, size=16, style_dim=32, n_mlp=2,
                    channel_max=16))
    finally:
        del os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"]


@probe("weight files", "a crafted `last.ckpt` planted in a run folder, then the same command re-run")
def _(tmp: Path):
    pickle_file(tmp / "run" / "ttn" / "checkpoints", "last.ckpt")
    train_with(tmp)


@probe("weight files", "a model whose weights are NaN")
def _(tmp: Path):
    from safetensors.torch import save_file

    state = {k: torch.full_like(v, float("nan")) for k, v in UNetGenerator(8, 1, 2).state_dict().items()}
    import json

    save_file(state, str(tmp / "nan.safetensors"), metadata={"dctnet": json.dumps({"format_version": "1", "kind": "ttn",
                                                                                   "arch": ARCH})})
    return stylize(photo(tmp / "p.png"), "--model", tmp / "nan.safetensors", "--output", tmp / "o.png")


@probe("weight files", "a model header with `arch: {}`")
def _(tmp: Path):
    from safetensors.torch import save_file

    save_file(UNetGenerator(8, 1, 2).state_dict(), str(tmp / "m.safetensors"),
              metadata={"dctnet": '{"format_version": "1", "kind": "ttn", "arch": {}}'})
    return stylize(photo(tmp / "p.png"), "--model", tmp / "m.safetensors", "--output", tmp / "o.png")


@probe("weight files", "a model file from another format version")
def _(tmp: Path):
    from safetensors.torch import save_file

    save_file(UNetGenerator(8, 1, 2).state_dict(), str(tmp / "m.safetensors"),
              metadata={"dctnet": '{"format_version": "0", "kind": "ttn", "arch": {}}'})
    return stylize(photo(tmp / "p.png"), "--model", tmp / "m.safetensors", "--output", tmp / "o.png")


@probe("weight files", "a missing pretrained file (VGG19 for the content loss)")
def _(tmp: Path):
    from dctnet.models.vgg import VGGFeatures

    os.environ["DCTNET_WEIGHTS"], os.environ["TORCH_HOME"] = str(tmp / "w"), str(tmp / "t")
    try:
        VGGFeatures("conv4_4", pretrained=True)
    finally:
        del os.environ["DCTNET_WEIGHTS"], os.environ["TORCH_HOME"]


# ---- images and folders -------------------------------------------------------------------------------------
def folder_of(tmp: Path, files: dict[str, bytes]) -> Path:
    folder = tmp / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))


@probe("images", "a folder with truncated, empty and non-image files beside good ones")
def _(tmp: Path):
    folder = folder_of(tmp, {"good.png": png(RGB), "truncated.png": png(RGB)[:200], "empty.png": b"",
                             "text.jpg": b"not an image\n" * 10})
    return stylize(folder, "--model", model(tmp), "--output", tmp / "out")


@probe("images", "grayscale, RGBA, palette, CMYK and 16-bit images")
def _(tmp: Path):
    buffer = io.BytesIO()
    RGB.convert("CMYK").save(buffer, format="JPEG")
    folder = folder_of(tmp, {"grey.png": png(RGB.convert("L")), "rgba.png": png(RGB.convert("RGBA")),
                             "palette.png": png(RGB.convert("P")), "cmyk.jpg": buffer.getvalue(),
                             "sixteen.png": png(Image.fromarray((np.arange(2400).reshape(40, 60) * 20).astype(np.uint16)))})
    return stylize(folder, "--model", model(tmp), "--output", tmp / "out")


@probe("images", "an image above the pixel limit (a decompression bomb)")
def _(tmp: Path):
    folder = folder_of(tmp, {"huge.png": png(Image.new("L", (12000, 9000)))})
    return stylize(folder, "--model", model(tmp), "--output", tmp / "out")


@probe("images", "an animated GIF")
def _(tmp: Path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((200, 10, 10), (10, 200, 10))]
    folder = tmp / "in"
    folder.mkdir()
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    return stylize(folder, "--model", model(tmp), "--output", tmp / "out")


@probe("images", "`a.jpg` and `a.png` in one folder")
def _(tmp: Path):
    folder = folder_of(tmp, {"a.png": png(RGB), "a.jpg": png(RGB)})
    code = stylize(folder, "--model", model(tmp), "--output", tmp / "out")
    return code, sorted(p.name for p in (tmp / "out").glob("*.png"))


@probe("images", "a symlink loop and a dangling link named like images")
def _(tmp: Path):
    folder = folder_of(tmp, {"good.png": png(RGB)})
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "gone.jpg").symlink_to(tmp / "nowhere.jpg")
    return stylize(folder, "--model", model(tmp), "--output", tmp / "out")


@probe("images", "an empty input folder")
def _(tmp: Path):
    (tmp / "in").mkdir()
    return stylize(tmp / "in", "--model", model(tmp), "--output", tmp / "out")


@probe("images", "an unwritable output location")
def _(tmp: Path):
    (tmp / "file").write_text("not a folder")
    return stylize(photo(tmp / "p.png"), "--model", model(tmp), "--output", tmp / "file" / "out" / "o.png")


@probe("images", "`--mode head` on an image without a face")
def _(tmp: Path):
    return stylize(photo(tmp / "p.png", 96), "--model", model(tmp), "--output", tmp / "o.png", "--mode", "head")


# ---- videos -------------------------------------------------------------------------------------------------
def clip(path: Path, frames: int = 20) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(frames):
        writer.write(np.full((48, 64, 3), 8 * k, np.uint8))
    writer.release()
    return path


@probe("videos", "a truncated video (fewer frames than its header says)")
def _(tmp: Path):
    data = clip(tmp / "c.avi").read_bytes()
    (tmp / "t.avi").write_bytes(data[: len(data) * 6 // 10])
    return stylize(tmp / "t.avi", "--model", model(tmp), "--output", tmp / "o.mp4")


@probe("videos", "a corrupt video (random bytes)")
def _(tmp: Path):
    (tmp / "c.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    return stylize(tmp / "c.mp4", "--model", model(tmp), "--output", tmp / "o.mp4")


# ---- configs and training -----------------------------------------------------------------------------------
@probe("configs", "a misspelt key (`ttn.stepz=10`)")
def _(tmp: Path):
    tiny_config(tmp, "ttn.stepz=10")


def train_with(tmp: Path, *overrides: str):
    from dctnet.ttn.train import train_ttn

    return train_ttn(tiny_config(tmp, *overrides))


BAD_SETTINGS = {"an appended unknown key (`+ttn.unknwon=1`)": ["+ttn.unknwon=1"],
                "`ttn.batch_size=0`": ["ttn.batch_size=0"], "`ttn.optimizer.betas=[0.5]`": ["ttn.optimizer.betas=[0.5]"]}
for _case, _overrides in BAD_SETTINGS.items():
    probe("configs", _case)(lambda tmp, overrides=_overrides: train_with(tmp, *overrides))


@probe("configs", "a re-run of a finished run folder with a changed learning rate")
def _(tmp: Path):
    train_with(tmp, "trainer.checkpoint_every=1")
    train_with(tmp, "trainer.checkpoint_every=1", "ttn.lr_g=1e-3", "trainer.max_steps=2")


@probe("configs", "a one-image training folder")
def _(tmp: Path):
    from dctnet.data.folders import ImageFolder

    folder = folder_of(tmp, {"only.png": png(RGB)})
    return len(ImageFolder(folder, 16))


# ---- running the probes -------------------------------------------------------------------------------------
def run(function: Callable[[Path], object]) -> tuple[str, str]:
    """(outcome, what the user sees): exit code or exception type, and messages (stderr, stdout, warnings)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library deprecation and tracer warnings are not what the user is told
        tmp = Path(folder)
        try:
            result = function(tmp)
            outcome = f"returns {result!r}" if result is not None else "runs"
            if (tmp / "pwned").exists():
                outcome += " — CODE RAN FROM A FILE"
        except BaseException as error:  # noqa: BLE001 - the probe reports whatever a user would meet
            if isinstance(error, KeyboardInterrupt):
                raise
            outcome = f"{type(error).__name__}" + (" — CODE RAN FROM A FILE" if (tmp / "pwned").exists() else "")
            err.write(" ".join(str(error).splitlines()[:4]) if str(error) else traceback.format_exc(limit=1))
    logging.getLogger().removeHandler(handler)
    progress = re.compile(r"(image|frame)s?/s\]|^\s*\d+%\|")  # tqdm bars are not messages
    texts = (re.sub(r"\x1b\[[0-9;]*m", "", text) for text in (err.getvalue(), stream.getvalue(), out.getvalue()))
    seen = [line.strip() for text in texts for part in text.splitlines() for line in part.split("\r")
            if line.strip() and not progress.search(line)
            and not line.startswith(("TTN on", "Training", "GPU", "TPU", "HPU", "💡"))]
    shown = " / ".join(dict.fromkeys(seen)).replace(folder, "$TMP")[:400].replace("|", "\\|")
    return outcome, shown


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for group, case, function in PROBES:
        outcome, seen = run(function)
        print(f"[{group}] {case}: {outcome}", file=sys.__stdout__, flush=True)
        rows.append(f"| {group} | {case} | {outcome} | {seen or '—'} |")
    text = "\n".join([
        "# Bad inputs and what the user sees", "",
        "Generated by `python scripts/reliability.py` from the real code paths (do not edit by hand). Each probe",
        "builds its bad input in a temporary folder and calls what a user calls: `dctnet stylize`, the training",
        "drivers, the loaders. *Outcome*: the exit code (`returns 0` = success, 1 = nothing written for this input,",
        "2 = usage or input error) or the exception a Python caller gets. *Seen*: stderr, logged warnings and",
        "stdout, abridged. `$TMP` is the probe's temporary folder. A probe that let a file run code would say so.",
        "", "| area | bad input | outcome | seen |", "|---|---|---|---|", *rows, ""])
    (ROOT / "docs" / "reliability.md").write_text(text)
    print(f"wrote {ROOT / 'docs' / 'reliability.md'} ({len(rows)} cases)", file=sys.__stdout__)


if __name__ == "__main__":
    main()
