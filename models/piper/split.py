#!/usr/bin/env python3
"""Splits a Piper VITS voice into an encoder and a decoder graph, for streaming synthesis.

    split.py VOICE.onnx OUT_DIR

Writes OUT_DIR/<voice>.encoder.onnx and OUT_DIR/<voice>.decoder.onnx (same weights, nothing
retrained or changed):

  encoder: input i64[1,n], input_lengths i64[1], scales f32[3]
           -> z f32[1,C,frames] (the latent that the HiFi-GAN decoder turns into audio, already
              masked) and durations f32[1,1,n] (frames per phoneme id, the model's own
              rounded-up duration prediction)
  decoder: z f32[1,C,frames] -> output f32[1,1,frames*hop]

The decoder is fully convolutional, so speechsynth decodes the latent in chunks (with a margin
of frames on each side) and sends the first chunk's audio while the rest is decoded; the
durations give each word's exact time in the audio, for progress reports.

The split points are found by name and type in the exported graph: the first node of the
decoder (`/dec/conv_pre/Conv`, its first input is z) and the single `Ceil` node (durations).
Multi-speaker voices (whose decoder also takes a speaker embedding) are refused; speechsynth
then runs the whole model.
"""

import sys
from pathlib import Path

import onnx
import onnx.utils


def find_split(model: onnx.ModelProto) -> tuple[str, str]:
    graph = model.graph
    if any(i.name == "sid" for i in graph.input):
        raise SystemExit("multi-speaker voice (has a `sid` input): not split")
    conv_pre = [n for n in graph.node if n.name == "/dec/conv_pre/Conv"]
    if len(conv_pre) != 1:
        raise SystemExit("no /dec/conv_pre/Conv node: not a Piper VITS export")
    z = conv_pre[0].input[0]
    ceil = [n for n in graph.node if n.op_type == "Ceil"]
    if len(ceil) != 1:
        raise SystemExit(f"expected one Ceil node (durations), found {len(ceil)}")
    return z, ceil[0].output[0]


def rename_outputs(path: Path, names: dict[str, str]) -> None:
    """Gives graph outputs stable names with Identity nodes."""
    model = onnx.load(str(path))
    graph = model.graph
    for output in graph.output:
        new = names[output.name]
        graph.node.append(onnx.helper.make_node("Identity", [output.name], [new], name=f"identity_{new}"))
        output.name = new
    onnx.save(model, str(path))


def rename_input(path: Path, old: str, new: str) -> None:
    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for graph_input in graph.input:
        if graph_input.name == old:
            graph_input.name = new
    onnx.save(model, str(path))


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    voice, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = voice.name.removesuffix(".onnx")
    model = onnx.load(str(voice))
    z, durations = find_split(model)
    encoder = out_dir / f"{stem}.encoder.onnx.partial"
    decoder = out_dir / f"{stem}.decoder.onnx.partial"
    onnx.utils.extract_model(str(voice), str(encoder), ["input", "input_lengths", "scales"], [z, durations])
    rename_outputs(encoder, {z: "z", durations: "durations"})
    onnx.utils.extract_model(str(voice), str(decoder), [z], ["output"])
    rename_input(decoder, z, "z")
    for part in (encoder, decoder):
        onnx.checker.check_model(str(part))
        part.rename(part.with_suffix(""))
    print(f"piper: split {voice.name} into {stem}.encoder.onnx and {stem}.decoder.onnx in {out_dir}")


if __name__ == "__main__":
    main()
