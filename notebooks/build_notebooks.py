"""Writes the three tutorial notebooks from the cell sources below (keeps them reviewable as Python).

    python notebooks/build_notebooks.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

SETUP = '''import os, sys
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1"); os.environ.setdefault("WANDB_MODE", "offline")
from pathlib import Path
REPO = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
sys.path.insert(0, str(REPO))
from hydra import compose, initialize_config_dir
from dctnet.config import register_configs
register_configs()
WORK = Path(os.environ.get("DCTNET_NOTEBOOK_DIR", REPO / "outputs" / "notebooks"))

def config(name, overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose(config_name=name, overrides=overrides)

# tiny CPU settings: 32 px, narrow networks, a few dozen iterations (use experiment=demo or your own for real runs)
TINY = [f"data.root={WORK}/data", "data.size=32", "data.synthetic.photos=48", "data.synthetic.cartoons=32",
        "data.synthetic.test=8", f"run_dir={WORK}/run", "resume=never", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "trainer.sample_every=20", "identity.pretrained=false",
        "identity.input_size=96", "ccn.model.size=16", "ccn.model.style_dim=32", "ccn.model.n_mlp=2",
        "ccn.model.channel_max=16", "ccn.pretrain.steps=40", "ccn.adapt.steps=20", "ccn.pretrain.batch_size=4",
        "ccn.adapt.batch_size=4", "ccn.sampling.count=24", "ccn.sampling.mean_latents=64", "ttn/model=unet_tiny",
        "ttn.steps=60", "ttn.warmup_steps=20", "ttn.batch_size=4", "ttn.loss.vgg_pretrained=false",
        "ttn.loss.vgg_layer=conv2_2", "ttn.discriminator.channels=[8,16,16]", "evaluate.feature_extractor=random", "evaluate.align_faces=false",
        "evaluate.lpips_pretrained=false", "evaluate.bootstrap=100"]'''

SHOW = '''from IPython.display import Image, display
def show(path, width=512):
    display(Image(filename=str(path), width=width))'''

NOTEBOOKS = {
    "01_quickstart.ipynb": [
        ("md", "# Quickstart: teach a style from ~100 drawings\n\nThe two folders are `data.photos` (real faces) "
               "and `data.cartoons` (your ~100 exemplars). Here both come from the bundled synthetic generator, "
               "with tiny networks so that the notebook runs on a CPU in about a minute."),
        ("code", SETUP),
        ("code", SHOW),
        ("md", "## Stage 1: content calibration\nPretrain a StyleGAN2 on the photos (or give "
               "`ccn.source_checkpoint=` a rosinality FFHQ checkpoint), adapt it to the cartoons, then blend and "
               "sample calibrated cartoons with a manifest."),
        ("code", "from dctnet.ccn.train import train_ccn\noutputs = train_ccn(config('ccn', TINY))\noutputs"),
        ("code", "import csv\nrows = list(csv.DictReader(open(outputs['calibrated'].parent / 'manifest.csv')))\n"
                 "print(len(rows), 'samples,', sum(r['kept'] == 'True' for r in rows), 'kept'); rows[:3]"),
        ("md", "## Stage 2: texture translation with geometry expansion"),
        ("code", "from dctnet.ttn.train import train_ttn\nmodel = train_ttn(config('ttn', TINY + "
                 "[f\"ttn.cartoons={outputs['calibrated']}\"]))\nmodel"),
        ("code", "samples = sorted((model.parent / 'samples').glob('*.png'))\nshow(samples[-1])  # top: photos, bottom: stylized"),
    ],
    "02_evaluate.ipynb": [
        ("md", "# Reproduce the metric table\n\nFID/KID against the cartoon domain, identity similarity, LPIPS, "
               "and paired L1/SSIM on the synthetic test pairs, for the trained TTN and the built-in baselines."),
        ("code", SETUP),
        ("code", SHOW),
        ("code", "from dctnet.ttn.train import train_ttn\nfrom dctnet.inference.stylize import load_stylizer, stylize_folder\n"
                 "model = train_ttn(config('ttn', TINY))\ncfg = config('evaluate', TINY)\n"
                 "stylize_folder(load_stylizer(model), cfg.data.test_photos, WORK / 'stylized', overwrite=True)"),
        ("code", "from dctnet.metrics.run import run_evaluation\nreport = run_evaluation(config('evaluate', TINY + "
                 "[f\"+evaluate.methods.ttn={WORK / 'stylized'}\"]))\nprint(report.read_text())"),
        ("code", "show(report.parent / 'grid.png')"),
    ],
    "03_inference.ipynb": [
        ("md", "# Inference and export\n\nStylize a real photo (scikit-image's astronaut) in full-frame and head "
               "mode, a short video, then export the TTN to ONNX with the built-in parity check and run it in "
               "ONNX Runtime. The command-line equivalent is `dctnet stylize INPUT --model ttn.safetensors --output OUT "
               "[--mode full|head|auto] [--backend onnxruntime]`."),
        ("code", SETUP),
        ("code", SHOW),
        ("code", "from dctnet.ttn.train import train_ttn\nmodel = train_ttn(config('ttn', TINY))"),
        ("code", "import skimage.data\nfrom dctnet.data.decode import write_image\nfrom dctnet.inference.stylize import load_stylizer\n"
                 "stylizer = load_stylizer(model, backend='torch')\nout = stylizer(skimage.data.astronaut())\nprint(out.shape)\n"
                 "write_image(WORK / 'astronaut.png', out)\nshow(WORK / 'astronaut.png', 256)"),
        ("md", "Head mode: MTCNN aligns each face, the crop is stylized and pasted back through the inverse "
               "transform with a feathered mask; the rest of the picture is unchanged."),
        ("code", "from dctnet.inference.stylize import PortraitStylizer\nportrait = PortraitStylizer(stylizer, mode='head')\n"
                 "write_image(WORK / 'astronaut_head.png', portrait(skimage.data.astronaut()))\n"
                 "print(portrait.faces_found, 'face(s)')\nshow(WORK / 'astronaut_head.png', 256)"),
        ("md", "Video: frames are stylized in batches; the audio track is copied when PyAV is installed."),
        ("code", "import cv2\nfrom dctnet.inference.stylize import stylize_video\nclip = WORK / 'pan.mp4'\n"
                 "writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*'mp4v'), 10, (256, 256))\n"
                 "photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)\n"
                 "for k in range(20):\n    writer.write(photo[4 * k:4 * k + 256, 8 * k:8 * k + 256])\nwriter.release()\n"
                 "frames, audio = stylize_video(stylizer, clip, WORK / 'pan_stylized.mp4')\n"
                 "print(frames, 'frames stylized; audio kept:', audio)\nassert frames == 20"),
        ("code", "from dctnet.inference.export import export_model\npath, worst = export_model(model, 'onnx')\n"
                 "print(path, f'max |ONNX - PyTorch| = {worst:.2e}')\nassert worst < 1e-3"),
        ("code", "onnx_stylizer = load_stylizer(model, backend='onnxruntime')\nimport numpy as np\n"
                 "difference = np.abs(onnx_stylizer(skimage.data.astronaut()).astype(int) - out.astype(int)).max()\n"
                 "print(onnx_stylizer.backend.name, 'max difference to PyTorch in 8-bit levels:', difference)\n"
                 "assert difference <= 1"),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                          for kind, src in cells]
        nbformat.write(notebook, HERE / name)


if __name__ == "__main__":
    main()
