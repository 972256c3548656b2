"""Import a released DCT-Net model (ModelScope's frozen TF1 graph, e.g. ``cartoon_anime_h.pb``) into a TTN file.

The released graphs are written by ModelScope's ``CartoonTranslationExporter``
(modelscope/exporters/cv/cartoon_translation_exporter.py) around ``CartoonModel``
(modelscope/models/cv/cartoon/model_tf.py, network.py, loss.py):

    input_image  float32 [H, W, 3], 0..255, BGR (the pipeline feeds ``img[:, :, ::-1]``)
    x = input_image[tf.newaxis] / 127.5 - 1
    y = guided_filter(x, unet_generator(x), r=1, eps=1e-2)     # box filter: zero padding / pixel count
    output_image = cast_uint8((clip(y[0], -0.999999, 0.999999) + 1) * 127.5)   # BGR

``unet_generator`` (scope ``generator``) builds its slim convolutions in the order Conv, Conv_1, ... Conv_9
with the residual blocks ``block_0 .. block_3`` (conv1, conv2) between Conv_4 and Conv_5; a frozen graph
keeps each variable as a Const of the same name (``generator/Conv/weights``: HWIO, ``.../biases``).

The import maps those tensors onto ``UNetGenerator`` in creation order, reverses the first layer's input
and the last layer's output channels (BGR -> RGB, exact: the output filter works per channel with the
same channel of the photo as guide), and sets ``tf_numerics`` so that SAME padding, TF1's bilinear resize
and the filter's border are the graph's own. Written by hand: no package converts a frozen TF graph into an
existing PyTorch module (onnx-tf/tf2onnx need TensorFlow itself).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from dctnet.checkpoints import CheckpointError, save_model
from dctnet.models.facenet_import import read_graph_constants
from dctnet.models.unet import TTN

SCOPE = "generator"
INPUT_NODE, OUTPUT_NODE = "input_image", "output_image"


def _conv_names(constants: dict[str, np.ndarray]) -> tuple[list[str], int]:
    """The graph's slim conv scopes in creation order, and the number of residual blocks."""
    plain = sorted((int(m.group(1) or 0), m.group(0)) for name in constants
                   if (m := re.fullmatch(rf"{SCOPE}/Conv(?:_(\d+))?", name.rsplit("/", 1)[0])) and name.endswith("/weights"))
    blocks = sorted({int(m.group(1)) for name in constants if (m := re.match(rf"{SCOPE}/block_(\d+)/conv1/weights$", name))})
    if len(plain) != 10 or blocks != list(range(len(blocks))):
        raise CheckpointError(f"not a DCT-Net generator graph: expected {SCOPE}/Conv .. Conv_9 and {SCOPE}/block_N "
                              f"scopes, found {len(plain)} Conv scopes and blocks {blocks}")
    names = [name for _, name in plain]
    residual = [f"{SCOPE}/block_{i}/conv{j}" for i in blocks for j in (1, 2)]
    return names[:5] + residual + names[5:], len(blocks)


def _filter_settings(constants: dict[str, np.ndarray], nodes: list) -> tuple[int, float]:
    """(radius, eps) of the output guided filter: the box kernel's size and the constant added to var_x."""
    by_name = {node.name: node for node in nodes}
    kernels = [constants[node.input[1].split(":")[0]] for node in nodes if node.op == "DepthwiseConv2dNative"
               and node.input[1].split(":")[0] in constants]
    eps = []
    for node in nodes:  # A = cov_xy / (var_x + eps): a RealDiv whose divisor adds a scalar Const
        divisor = by_name.get(node.input[1].split(":")[0]) if node.op == "RealDiv" and len(node.input) > 1 else None
        if divisor is not None and divisor.op in ("Add", "AddV2"):
            eps += [float(constants[i]) for i in divisor.input if i in constants and constants[i].size == 1]
    if not kernels or len(eps) != 1:
        raise CheckpointError(f"could not find the output guided filter in the graph ({len(kernels)} box kernels, "
                              f"{len(eps)} eps constants): not a released DCT-Net graph?")
    size = kernels[0].shape[0]
    return (size - 1) // 2, eps[0]


def convert_official_graph(graph_path: str | Path) -> TTN:
    """The released graph as a ``TTN`` (RGB in/out in [-1, 1], ``tf_numerics`` on), weights loaded."""
    constants, nodes = read_graph_constants(Path(graph_path))
    names, blocks = _conv_names(constants)
    weights = [constants[f"{name}/weights"] for name in names]
    base = weights[0].shape[3]
    radius, eps = _filter_settings(constants, nodes)
    ttn = TTN(base_channels=base, num_residual=blocks, num_downsamples=2, output_guided_filter=True,
              guided_filter_radius=radius, guided_filter_eps=eps, tf_numerics=True)
    targets = [name for name, _ in ttn.network.named_parameters() if name.endswith(".weight")]
    if len(targets) != len(names):
        raise CheckpointError(f"the graph has {len(names)} convolutions, the U-Net {len(targets)}")
    state = {}
    for index, (name, target) in enumerate(zip(names, targets)):
        kernel = torch.from_numpy(weights[index].transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
        bias = torch.from_numpy(constants[f"{name}/biases"].copy())
        if index == 0:
            kernel = kernel.flip(1)  # BGR input channels -> RGB
        if index == len(names) - 1:
            kernel, bias = kernel.flip(0), bias.flip(0)  # BGR output channels -> RGB
        state[target], state[target[:-len("weight")] + "bias"] = kernel, bias
    expected = {k: tuple(v.shape) for k, v in ttn.network.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        wrong = sorted(k for k in expected if expected[k] != found.get(k))
        raise CheckpointError(f"{graph_path}: tensor shapes do not fit the U-Net at {wrong[:4]}")
    ttn.network.load_state_dict(state)
    return ttn.eval()


def import_official_graph(graph_path: str | Path, output: str | Path) -> Path:
    """Write ``ttn.safetensors`` (+ JSON) from a released DCT-Net ``.pb``; ``dctnet stylize --model`` reads it."""
    graph_path = Path(graph_path)
    if not graph_path.is_file():
        raise FileNotFoundError(f"{graph_path} does not exist: the released graphs are ModelScope's "
                                "damo/cv_unet_person-image-cartoon*_compound-models files (cartoon_*_h.pb, *_bg.pb)")
    ttn = convert_official_graph(graph_path)
    return save_model(output, ttn.network.state_dict(), kind="ttn", arch=ttn.arch(),
                      extra={"imported_from": graph_path.name, "source": "DCT-Net official release (TF1 graph)"})
