#!/usr/bin/env python3
"""Builds the native-kind contract model: a small stateful ONNX graph that follows
CONTRACT.md (beside this file). numpy + onnx only; deterministic (fixed seed), so the same
versions give the same bytes.

The weights are not trained. The graph computes, per micro-turn:
- user activity: the fraction of dMel frames whose mean level is above a threshold;
- a turn-taking state machine in `state_in.turn` / `state_out.turn`
  ([speech run, silence run, had speech, step count], in micro-turns);
- the reasoning trigger: speech was heard and `SILENCE_STEPS` silent micro-turns followed;
- action scores [listen, speak, backchannel, yield]: yield when the user has spoken for
  `BARGE_STEPS` micro-turns while the agent speaks (context[0]); speak when text bytes arrived;
- `text_bytes`: the arrived bytes, to be said (the model has no language of its own);
- a random recurrent core `state_in.h` -> `state_out.h` (tanh) mixing audio, video patches and
  bytes, so the state is a real tensor carried across steps.

Usage: build.py OUTPUT.onnx
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20261125
HIDDEN = 64
EMBED = 8
N_MELS = 80
LEVELS = 16
PATCH = 40
PATCH_VALUES = PATCH * PATCH * 3
ACTIONS = ["listen", "speak", "backchannel", "yield"]
# A dMel frame is voiced when its mean level (0..1) is above this; a micro-turn is speech when
# more than SPEECH_FRACTION of its frames are voiced.
FRAME_LEVEL = 0.12
SPEECH_FRACTION = 0.3
SILENCE_STEPS = 3  # 600 ms of silence after speech triggers reasoning
BARGE_STEPS = 2  # 400 ms of user speech over the agent yields


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def build(path):
    rng = np.random.default_rng(SEED)
    inits = [
        const("c_levels", np.array(LEVELS - 1, dtype=np.float32)),
        const("c_frame_level", np.array(FRAME_LEVEL, dtype=np.float32)),
        const("c_speech_fraction", np.array(SPEECH_FRACTION, dtype=np.float32)),
        const("c_one", np.array(1.0, dtype=np.float32)),
        const("c_half", np.array(0.5, dtype=np.float32)),
        const("c_silence_steps", np.array(SILENCE_STEPS - 0.5, dtype=np.float32)),
        const("c_barge_steps", np.array(BARGE_STEPS - 0.5, dtype=np.float32)),
        const("c_listen", np.array([[0.5]], dtype=np.float32)),
        const("c_backchannel", np.array([[0.0]], dtype=np.float32)),
        const("ax_mels", np.array([2], dtype=np.int64)),
        const("ax_1", np.array([1], dtype=np.int64)),
        const("i_0", np.array([0], dtype=np.int64)),
        const("i_1", np.array([1], dtype=np.int64)),
        const("i_2", np.array([2], dtype=np.int64)),
        const("i_3", np.array([3], dtype=np.int64)),
        const("i_4", np.array([4], dtype=np.int64)),
        const("c_one_i", np.array(1, dtype=np.int64)),
        const("W_h", (rng.standard_normal((HIDDEN, HIDDEN)) * 0.3).astype(np.float32)),
        const("W_x", (rng.standard_normal((2 + 2 * EMBED, HIDDEN)) * 0.5).astype(np.float32)),
        const("W_p", (rng.standard_normal((PATCH_VALUES, EMBED)) * 0.02).astype(np.float32)),
        const("E_b", (rng.standard_normal((256, EMBED)) * 0.5).astype(np.float32)),
    ]
    n = []

    def node(op, inputs, outputs, **attrs):
        n.append(helper.make_node(op, inputs, outputs, **attrs))

    # User activity from dMel levels.
    node("Cast", ["dmel"], ["x_f"], to=TensorProto.FLOAT)
    node("Div", ["x_f", "c_levels"], ["x_n"])  # [1, F, 80] in 0..1
    node("ReduceMean", ["x_n", "ax_mels"], ["frame_level"], keepdims=0)  # [1, F]
    node("Greater", ["frame_level", "c_frame_level"], ["voiced_b"])
    node("Cast", ["voiced_b"], ["voiced"], to=TensorProto.FLOAT)
    node("ReduceMean", ["voiced", "ax_1"], ["activity"], keepdims=1)  # [1, 1]
    node("Greater", ["activity", "c_speech_fraction"], ["speech_b"])
    node("Cast", ["speech_b"], ["speech"], to=TensorProto.FLOAT)  # [1, 1]
    node("Sub", ["c_one", "speech"], ["quiet"])

    # Turn-taking state: [speech run, silence run, had speech, steps].
    node("Slice", ["state_in.turn", "i_0", "i_1", "ax_1"], ["sr"])
    node("Slice", ["state_in.turn", "i_1", "i_2", "ax_1"], ["sl"])
    node("Slice", ["state_in.turn", "i_2", "i_3", "ax_1"], ["hs"])
    node("Slice", ["state_in.turn", "i_3", "i_4", "ax_1"], ["steps"])
    node("Add", ["sr", "c_one"], ["sr_inc"])
    node("Mul", ["sr_inc", "speech"], ["sr_new"])
    node("Add", ["sl", "c_one"], ["sl_inc"])
    node("Mul", ["sl_inc", "quiet"], ["sl_new"])
    node("Max", ["hs", "speech"], ["hs_seen"])
    node("Greater", ["hs_seen", "c_half"], ["hs_b"])
    node("Greater", ["sl_new", "c_silence_steps"], ["long_silence"])
    node("And", ["hs_b", "long_silence"], ["trigger_b"])
    node("Cast", ["trigger_b"], ["reasoning"], to=TensorProto.FLOAT)  # [1, 1]
    node("Sub", ["c_one", "reasoning"], ["not_trigger"])
    node("Mul", ["hs_seen", "not_trigger"], ["hs_new"])
    node("Add", ["steps", "c_one"], ["steps_new"])
    node("Concat", ["sr_new", "sl_new", "hs_new", "steps_new"], ["state_out.turn"], axis=1)

    # Actions.
    node("Slice", ["context", "i_0", "i_1", "ax_1"], ["agent_speaking"])
    node("Greater", ["sr_new", "c_barge_steps"], ["sustained_b"])
    node("Cast", ["sustained_b"], ["sustained"], to=TensorProto.FLOAT)
    node("Mul", ["agent_speaking", "sustained"], ["yield_score"])
    node("Shape", ["bytes"], ["bytes_shape"])
    node("Gather", ["bytes_shape", "c_one_i"], ["byte_count"], axis=0)  # scalar
    node("Cast", ["byte_count"], ["byte_count_f"], to=TensorProto.FLOAT)
    node("Min", ["byte_count_f", "c_one"], ["has_bytes"])
    node("Reshape", ["has_bytes", "shape_11"], ["speak_score"])
    inits.append(const("shape_11", np.array([1, 1], dtype=np.int64)))
    node(
        "Concat",
        ["c_listen", "speak_score", "c_backchannel", "yield_score"],
        ["actions"],
        axis=1,
    )
    node("Identity", ["bytes"], ["text_bytes"])
    node("Identity", ["activity"], ["user_activity"])

    # Recurrent core: h' = tanh(h W_h + [activity, speech, patches, bytes] W_x).
    node("MatMul", ["patches", "W_p"], ["patch_embed"])  # [1, P, 8]
    node("ReduceSum", ["patch_embed", "ax_1"], ["patch_sum"], keepdims=0)  # [1, 8]
    node("Shape", ["patches"], ["patches_shape"])
    node("Gather", ["patches_shape", "c_one_i"], ["patch_count"], axis=0)
    node("Cast", ["patch_count"], ["patch_count_f"], to=TensorProto.FLOAT)
    node("Max", ["patch_count_f", "c_one"], ["patch_div"])
    node("Div", ["patch_sum", "patch_div"], ["patch_mean"])
    node("Gather", ["E_b", "bytes"], ["byte_embed"], axis=0)  # [1, B, 8]
    node("ReduceSum", ["byte_embed", "ax_1"], ["byte_sum"], keepdims=0)
    node("Max", ["byte_count_f", "c_one"], ["byte_div"])
    node("Div", ["byte_sum", "byte_div"], ["byte_mean"])
    node("Concat", ["activity", "speech", "patch_mean", "byte_mean"], ["features"], axis=1)
    node("MatMul", ["state_in.h", "W_h"], ["hh"])
    node("MatMul", ["features", "W_x"], ["hx"])
    node("Add", ["hh", "hx"], ["h_pre"])
    node("Tanh", ["h_pre"], ["state_out.h"])

    f32, i64, u8 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8
    inputs = [
        helper.make_tensor_value_info("dmel", u8, [1, "frames", N_MELS]),
        helper.make_tensor_value_info("patches", f32, [1, "patches", PATCH_VALUES]),
        helper.make_tensor_value_info("bytes", i64, [1, "bytes"]),
        helper.make_tensor_value_info("context", f32, [1, 2]),
        helper.make_tensor_value_info("state_in.h", f32, [1, HIDDEN]),
        helper.make_tensor_value_info("state_in.turn", f32, [1, 4]),
    ]
    outputs = [
        helper.make_tensor_value_info("actions", f32, [1, len(ACTIONS)]),
        helper.make_tensor_value_info("text_bytes", i64, [1, "bytes"]),
        helper.make_tensor_value_info("reasoning", f32, [1, 1]),
        helper.make_tensor_value_info("user_activity", f32, [1, 1]),
        helper.make_tensor_value_info("state_out.h", f32, [1, HIDDEN]),
        helper.make_tensor_value_info("state_out.turn", f32, [1, 4]),
    ]
    graph = helper.make_graph(n, "interaction_native_contract", inputs, outputs, inits)
    model = helper.make_model(
        graph,
        producer_name="gst-interaction models/interaction-native/build.py",
        opset_imports=[helper.make_opsetid("", 18)],
    )
    model.ir_version = 9
    metadata = {
        "interaction.contract": "1",
        "interaction.action_labels": ",".join(ACTIONS),
        "frontend.sample_rate": "16000",
        "frontend.turn_duration_ms": "200",
        "frontend.dmel.window": "800",
        "frontend.dmel.n_fft": "800",
        "frontend.dmel.hop": "200",
        "frontend.dmel.n_mels": str(N_MELS),
        "frontend.dmel.fmin": "80",
        "frontend.dmel.fmax": "7600",
        "frontend.dmel.log_min": "-7",
        "frontend.dmel.log_max": "2",
        "frontend.dmel.levels": str(LEVELS),
        "frontend.dmel.framing": "causal",
        "frontend.patch": str(PATCH),
        "frontend.patch.mean": "0.5",
        "frontend.patch.std": "0.5",
    }
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build.py OUTPUT.onnx")
    build(sys.argv[1])
