#!/usr/bin/env python3
"""Int8 copies of the converted Whisper graphs, for the CPU (called by convert.py).

  encoder-int8.onnx, decoder-int8.onnx: the same inputs and outputs as encoder.onnx and
  decoder.onnx; every MatMul with a constant weight is quantised dynamically (weights int8
  with one scale per output channel, activations uint8 per call: ONNX Runtime's
  `quantize_dynamic`). The attention products of two activations stay f32
  (`MatMulConstBOnly`): quantising them too was slower here and changed words.

Measured (2026-12-04, 2-core Xeon, 20 sentences in each of three voices, Piper joe and
espeak-ng en-us / en-gb, one thread): WER 1.0 / 9.5 / 12.4 % against the f32 graphs'
1.0 / 10.0 / 12.4 %, in 298 ms a sentence against 523 ms. One scale per tensor, the other
common recipe, was as fast but worse (2.0 / 13.9 / 15.4 %).

The decoder's tied output projection is a Gemm with transB on the embedding, which the
quantiser does not handle; it is rewritten as a MatMul on a transposed copy first, so the
51 864 x 384 projection, half of a decoder step, reads 20 MB of int8 instead of 80 MB of f32.
The token embedding (a Gather) keeps the f32 table.
"""

import logging
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic


def untie_output_projection(model: onnx.ModelProto) -> int:
    """Gemm(x, W, transB=1) -> MatMul(x, W^T) with W^T a new initializer; returns how many."""
    initializers = {i.name: i for i in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Gemm" or node.input[1] not in initializers:
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("transB") != 1 or attributes.get("transA", 0) != 0 or len(node.input) != 2:
            raise SystemExit(f"whisper: unexpected Gemm {node.name} {attributes}: not made by convert.py")
        weight = numpy_helper.to_array(initializers[node.input[1]])
        transposed = numpy_helper.from_array(np.ascontiguousarray(weight.T), node.input[1] + ".transposed")
        model.graph.initializer.append(transposed)
        node.op_type = "MatMul"
        node.input[1] = transposed.name
        del node.attribute[:]
        changed += 1
    return changed


def quantize(source: Path, target: Path, untie: bool = False):
    # The quantiser suggests its shape-inference pre-pass on every call; these graphs need none.
    logging.getLogger().setLevel(logging.ERROR)
    if untie:
        model = onnx.load(str(source))
        if untie_output_projection(model) != 1:
            raise SystemExit(f"whisper: {source} has no tied output projection to rewrite")
        staged = target.with_name(target.stem + ".f32-matmul.onnx")
        onnx.save(model, str(staged))
        source = staged
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        extra_options={"MatMulConstBOnly": True},
    )
    if untie:
        staged.unlink()


def quantize_folder(folder: Path):
    quantize(folder / "encoder.onnx", folder / "encoder-int8.onnx")
    quantize(folder / "decoder.onnx", folder / "decoder-int8.onnx", untie=True)


if __name__ == "__main__":
    quantize_folder(Path(sys.argv[1]))
