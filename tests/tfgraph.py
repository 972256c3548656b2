"""Test helpers for the official-graph import: write a frozen DCT-Net graph and re-execute a GraphDef in NumPy.

``write_official_graph`` builds, with tensorboard's GraphDef protos (no TensorFlow here), the graph that
ModelScope's ``CartoonTranslationExporter`` freezes: the same variable names (``generator/Conv/weights`` ...),
the same ops (StridedSlice, RealDiv, Conv2D + BiasAdd, LeakyRelu, ResizeBilinear with TF1's legacy sampling,
DepthwiseConv2dNative box filters, Fill, clip, Cast) in the order the TF source creates them.
``run_graph`` is an independent oracle: a NumPy interpreter of those ops that follows TF's documented
semantics (SAME padding, half_pixel_centers=False), sharing no code with the PyTorch model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class _Builder:
    def __init__(self) -> None:
        from tensorboard.compat.proto import graph_pb2

        self.graph = graph_pb2.GraphDef()
        self.counts: dict[str, int] = {}

    def name(self, base: str) -> str:
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def node(self, name: str, op: str, inputs: list[str], **attrs) -> str:
        from tensorboard.compat.proto import attr_value_pb2, types_pb2

        node = self.graph.node.add(name=name, op=op)
        node.input.extend(inputs)
        for key, value in attrs.items():
            attr = node.attr[key]
            if key in ("T", "dtype", "DstT", "SrcT", "Index", "Tshape"):
                attr.CopyFrom(attr_value_pb2.AttrValue(type={"float": types_pb2.DT_FLOAT, "int32": types_pb2.DT_INT32,
                                                              "uint8": types_pb2.DT_UINT8}[value]))
            elif isinstance(value, bool):
                attr.b = value
            elif isinstance(value, int):
                attr.i = value
            elif isinstance(value, float):
                attr.f = value
            elif isinstance(value, bytes):
                attr.s = value
            elif isinstance(value, list):
                attr.list.i.extend(value)
        return name

    def const(self, name: str, value) -> str:
        from tensorboard.util import tensor_util

        array = np.asarray(value)
        array = array.astype(np.float32) if array.dtype.kind == "f" else array.astype(np.int32)
        node = self.graph.node.add(name=name, op="Const")
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array))
        node.attr["dtype"].type = 1 if array.dtype == np.float32 else 3
        return name


def _official_conv_names(blocks: int) -> list[str]:
    names = ["Conv"] + [f"Conv_{i}" for i in range(1, 10)]
    return names[:5] + [f"block_{i}/conv{j}" for i in range(blocks) for j in (1, 2)] + names[5:]


def official_weights(channel: int = 8, blocks: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random HWIO weights and biases of ``unet_generator(channel, num_blocks)`` keyed by TF variable name."""
    rng = np.random.default_rng(seed)
    shapes = [(7, 3, channel), (3, channel, channel), (3, channel, 2 * channel), (3, 2 * channel, 2 * channel),
              (3, 2 * channel, 4 * channel)] + [(3, 4 * channel, 4 * channel)] * (2 * blocks) + [
              (3, 4 * channel, 2 * channel), (3, 2 * channel, 2 * channel), (3, 2 * channel, channel),
              (3, channel, channel), (7, channel, 3)]
    weights = {}
    for name, (k, cin, cout) in zip(_official_conv_names(blocks), shapes):
        weights[f"generator/{name}/weights"] = rng.normal(0, 1.2 / np.sqrt(k * k * cin), (k, k, cin, cout))
        weights[f"generator/{name}/biases"] = rng.normal(0, 0.05, cout)
    return weights


def write_official_graph(path: Path, weights: dict[str, np.ndarray], radius: int = 1, eps: float = 1e-2) -> Path:
    """The frozen exporter graph (input_image -> output_image) with ``weights``; returns ``path``."""
    b = _Builder()
    for name, value in weights.items():
        b.const(name, value)
        b.node(f"{name}/read", "Identity", [name], T="float")
    blocks = sum(1 for name in weights if name.endswith("conv1/weights"))
    conv_names = iter(_official_conv_names(blocks))

    def strided_slice(x: str, begin, end, strides, scope: str = "", **masks) -> str:
        name = b.name(f"{scope}strided_slice")
        args = [b.const(f"{name}/stack{suffix}", v) for suffix, v in (("", begin), ("_1", end), ("_2", strides))]
        return b.node(name, "StridedSlice", [x, *args], T="float", Index="int32", **masks)

    x = b.node(INPUT, "Placeholder", [], dtype="float")
    x = strided_slice(x, [0, 0, 0], [0, 0, 0], [1, 1, 1], begin_mask=7, end_mask=7)
    x = strided_slice(x, [0], [0], [1], new_axis_mask=1)
    x = b.node(b.name("truediv"), "RealDiv", [x, b.const("truediv/y", 127.5)], T="float")
    photo = x = b.node(b.name("sub"), "Sub", [x, b.const("sub/y", 1.0)], T="float")

    def conv(h: str, stride: int = 1, act: bool = True) -> str:
        scope = f"generator/{next(conv_names)}"
        h = b.node(f"{scope}/Conv2D", "Conv2D", [h, f"{scope}/weights/read"], T="float", strides=[1, stride, stride, 1],
                   padding=b"SAME", data_format=b"NHWC")
        h = b.node(f"{scope}/BiasAdd", "BiasAdd", [h, f"{scope}/biases/read"], T="float", data_format=b"NHWC")
        return b.node(b.name("generator/LeakyRelu"), "LeakyRelu", [h], T="float", alpha=0.2) if act else h

    def resize_to_double(h: str) -> str:
        shape = b.node(b.name("generator/Shape"), "Shape", [h], T="float", out_type="int32")
        sizes = []
        for axis in (1, 2):
            dim = strided_slice(shape, [axis], [axis + 1], [1], scope="generator/", shrink_axis_mask=1)
            sizes.append(b.node(b.name("generator/mul"), "Mul", [dim, b.const(b.name("generator/mul/y"), 2)], T="int32"))
        size = b.node(b.name("generator/ResizeBilinear/size"), "Pack", sizes, T="int32", N=2, axis=0)
        return b.node(b.name("generator/ResizeBilinear"), "ResizeBilinear", [h, size], T="float",
                      align_corners=False, half_pixel_centers=False)

    x0 = conv(photo)
    x1 = conv(conv(x0, 2))
    x2 = conv(conv(x1, 2))
    for _ in range(blocks):
        inner = conv(x2)
        inner = conv(inner, act=False)
        x2 = b.node(b.name("generator/add"), "AddV2", [inner, x2], T="float")  # resblock: x + inputs
    x2 = conv(x2)
    x3 = b.node(b.name("generator/add"), "AddV2", [resize_to_double(x2), x1], T="float")
    x3 = conv(conv(x3))
    x4 = b.node(b.name("generator/add"), "AddV2", [resize_to_double(x3), x0], T="float")
    raw = conv(conv(x4), act=False)

    # guided_filter(photo, raw, r, eps): box filters are depthwise convs divided by the in-image pixel count
    shape = b.node(b.name("Shape"), "Shape", [photo], T="float", out_type="int32")
    dims = [strided_slice(shape, [axis], [axis + 1], [1], shrink_axis_mask=1) for axis in (1, 2)]
    ones_shape = b.node("ones/shape", "Pack", [b.const("ones/shape/0", 1), *dims, b.const("ones/shape/3", 1)], T="int32",
                        N=4, axis=0)
    ones = b.node("ones", "Fill", [ones_shape, b.const("ones/Const", 1.0)], T="float", index_type="int32")

    def box(h: str, channels: int) -> str:
        kernel = b.const(b.name("box_kernel"), np.full((2 * radius + 1,) * 2 + (channels, 1), 1 / (2 * radius + 1) ** 2))
        return b.node(b.name("DepthwiseConv2dNative"), "DepthwiseConv2dNative", [h, kernel], T="float",
                      strides=[1, 1, 1, 1], padding=b"SAME", data_format=b"NHWC")

    def op(kind: str, left: str, right: str) -> str:
        base = {"RealDiv": "truediv", "Mul": "mul", "Sub": "sub", "AddV2": "add"}[kind]
        return b.node(b.name(base), kind, [left, right], T="float")

    count = box(ones, 1)
    mean_x, mean_y = op("RealDiv", box(photo, 3), count), op("RealDiv", box(raw, 3), count)
    cov = op("Sub", op("RealDiv", box(op("Mul", photo, raw), 3), count), op("Mul", mean_x, mean_y))
    var = op("Sub", op("RealDiv", box(op("Mul", photo, photo), 3), count), op("Mul", mean_x, mean_x))
    a = op("RealDiv", cov, op("AddV2", var, b.const("add/y", eps)))
    bias = op("Sub", mean_y, op("Mul", a, mean_x))
    mean_a, mean_b = op("RealDiv", box(a, 3), count), op("RealDiv", box(bias, 3), count)
    out = op("AddV2", op("Mul", mean_a, photo), mean_b)

    out = strided_slice(out, [0], [1], [1], shrink_axis_mask=1)
    out = b.node("clip_by_value/Minimum", "Minimum", [out, b.const("clip_by_value/Minimum/y", 0.999999)], T="float")
    out = b.node("clip_by_value", "Maximum", [out, b.const("clip_by_value/y", -0.999999)], T="float")
    out = op("Mul", op("AddV2", out, b.const("add_1/y", 1.0)), b.const("mul_2/y", 127.5))
    b.node(OUTPUT, "Cast", [out], SrcT="float", DstT="uint8", Truncate=False)
    path.write_bytes(b.graph.SerializeToString())
    return path


INPUT, OUTPUT = "input_image", "output_image"


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(x: np.ndarray, kernel: np.ndarray, stride: int, depthwise: bool) -> np.ndarray:
    """NHWC convolution with SAME padding (zeros), HWIO kernel (depthwise: HW C 1)."""
    k = kernel.shape[0]
    (top, bottom), (left, right) = _same_pads(x.shape[1], k, stride), _same_pads(x.shape[2], k, stride)
    padded = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    if depthwise:
        return np.einsum("nhwcij,ijc->nhwc", windows, kernel[..., 0])
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel)


def _resize_legacy(x: np.ndarray, size: np.ndarray) -> np.ndarray:
    """tf.image.resize_bilinear, align_corners=False, half_pixel_centers=False."""
    out = x
    for axis, target in zip((1, 2), size):
        length = out.shape[axis]
        source = np.arange(target) * (length / target)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, length - 1)
        shape = [1, 1, 1, 1]
        shape[axis] = target
        frac = (source - low).reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - frac) + np.take(out, high, axis=axis) * frac
    return out


def _strided_slice(x: np.ndarray, begin, end, strides, attrs) -> np.ndarray:
    """TF StridedSlice for the mask combinations the exporter uses (begin/end masks, new axis, shrink)."""
    index, dim = [], 0
    for i, (lo, hi, step) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if attrs["new_axis_mask"] & bit:
            index.append(np.newaxis)
            continue
        if attrs["shrink_axis_mask"] & bit:
            index.append(int(lo))
        else:
            index.append(slice(None if attrs["begin_mask"] & bit else int(lo),
                               None if attrs["end_mask"] & bit else int(hi), int(step)))
        dim += 1
    return x[tuple(index)]


def run_graph(path: Path, image: np.ndarray, fetch: str = OUTPUT) -> np.ndarray:
    """Execute the GraphDef at ``path`` in NumPy (float64) on ``image`` fed to ``input_image``; returns ``fetch``."""
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.util import tensor_util

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(Path(path).read_bytes())
    nodes = {node.name: node for node in graph.node}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        name = name.split(":")[0]
        if name not in values:
            values[name] = evaluate(nodes[name])
        return values[name]

    def evaluate(node) -> np.ndarray:
        args = [value(i) for i in node.input]
        attr = lambda key: node.attr[key]  # noqa: E731
        if node.op == "Placeholder":
            return image.astype(np.float64)
        if node.op == "Const":
            return tensor_util.make_ndarray(attr("value").tensor).astype(np.float64 if attr("dtype").type == 1 else np.int64)
        if node.op == "Identity":
            return args[0]
        if node.op == "StridedSlice":
            masks = {k: attr(k).i for k in ("begin_mask", "end_mask", "new_axis_mask", "shrink_axis_mask")}
            return np.asarray(_strided_slice(args[0], args[1], args[2], args[3], masks))
        simple = {"RealDiv": np.divide, "Sub": np.subtract, "Mul": np.multiply, "AddV2": np.add, "Add": np.add,
                  "Minimum": np.minimum, "Maximum": np.maximum, "BiasAdd": np.add}
        if node.op in simple:
            return simple[node.op](args[0], args[1])
        if node.op in ("Conv2D", "DepthwiseConv2dNative"):
            return _conv(args[0], args[1], attr("strides").list.i[1], node.op == "DepthwiseConv2dNative")
        if node.op == "LeakyRelu":
            return np.where(args[0] > 0, args[0], attr("alpha").f * args[0])
        if node.op == "Shape":
            return np.array(args[0].shape, np.int64)
        if node.op == "Pack":
            return np.stack(args)
        if node.op == "Fill":
            return np.full(tuple(int(d) for d in args[0]), args[1])
        if node.op == "ResizeBilinear":
            assert not attr("align_corners").b and not attr("half_pixel_centers").b
            return _resize_legacy(args[0], args[1])
        if node.op == "Cast":
            return np.floor(args[0]).clip(0, 255).astype(np.uint8)  # float -> uint8 truncates
        raise NotImplementedError(f"op {node.op} ({node.name})")

    return value(fetch)
