//! The native kind: one stateful ONNX graph per micro-turn (`models/interaction-native/
//! CONTRACT.md`). Its state tensors (`state_in.*` → `state_out.*`) stay bound with IoBinding:
//! two tensors per state, allocated once by the session's allocator, swapped between input
//! and output after each step, so a step never copies the state through new host buffers.

use std::path::Path;

use interaction_protocol::packet::{Packet, text_flags};
use ort::session::{IoBinding, Session};
use ort::value::{Tensor, TensorValueType, Value};

use crate::conversation::{Action, Conversation};
use crate::device::{Provider, open_session};
use crate::engine::{Engine, StepInfo};

/// The contract version this build runs.
pub const CONTRACT_VERSION: &str = "1";

/// Front-end parameters read from the model's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeFrontEnd {
    pub dmel: kernels::DmelConfig,
    pub patch: usize,
    pub patch_mean: f32,
    pub patch_std: f32,
    pub action_labels: Vec<String>,
}

struct StatePair {
    input: String,
    output: String,
    /// `tensors[current]` is bound as the input (the latest state); the other is the output.
    tensors: [Value<TensorValueType<f32>>; 2],
    current: usize,
}

/// The native engine.
pub struct Native {
    session: Session,
    binding: IoBinding,
    states: Vec<StatePair>,
    actions: Value<TensorValueType<f32>>,
    frontend: NativeFrontEnd,
    dmel: kernels::DmelStream,
    patchify: kernels::Patchify,
    has_context: bool,
    outputs_optional: [bool; 3],
    levels: Vec<u8>,
    mix: Vec<f32>,
    patches: Vec<f32>,
    label_index: [Option<usize>; 4],
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native")
            .field("states", &self.states.len())
            .field("frontend", &self.frontend)
            .finish_non_exhaustive()
    }
}

fn metadata(session: &Session, path: &Path) -> Result<NativeFrontEnd, String> {
    let meta = session
        .metadata()
        .map_err(|e| format!("model {}: no metadata: {e}", path.display()))?;
    let get = |key: &str| -> Result<String, String> {
        meta.custom(key).ok_or_else(|| {
            format!(
                "model {} lacks the metadata property `{key}` (see models/interaction-native/CONTRACT.md)",
                path.display()
            )
        })
    };
    let number = |key: &str| -> Result<f64, String> {
        get(key)?.trim().parse::<f64>().map_err(|_| {
            format!(
                "model {}: metadata property `{key}` is not a number",
                path.display()
            )
        })
    };
    let contract = get("interaction.contract")?;
    if contract.trim() != CONTRACT_VERSION {
        return Err(format!(
            "model {} follows contract version {contract}; this build runs version {CONTRACT_VERSION}",
            path.display()
        ));
    }
    let action_labels: Vec<String> = get("interaction.action_labels")?
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let dmel = kernels::DmelConfig {
        sample_rate: number("frontend.sample_rate")? as u32,
        window: number("frontend.dmel.window")? as usize,
        n_fft: number("frontend.dmel.n_fft")? as usize,
        hop: number("frontend.dmel.hop")? as usize,
        n_mels: number("frontend.dmel.n_mels")? as usize,
        fmin: number("frontend.dmel.fmin")?,
        fmax: number("frontend.dmel.fmax")?,
        log_min: number("frontend.dmel.log_min")? as f32,
        log_max: number("frontend.dmel.log_max")? as f32,
        levels: number("frontend.dmel.levels")? as usize,
        framing: match meta
            .custom("frontend.dmel.framing")
            .as_deref()
            .map(str::trim)
        {
            None | Some("causal") => kernels::dmel::DmelFraming::Causal,
            Some("centered") => kernels::dmel::DmelFraming::Centered,
            Some(other) => {
                return Err(format!(
                    "model {}: metadata frontend.dmel.framing \"{other}\" is not causal or centered",
                    path.display()
                ));
            }
        },
    };
    dmel.validate()
        .map_err(|e| format!("model {}: front end: {e}", path.display()))?;
    Ok(NativeFrontEnd {
        dmel,
        patch: number("frontend.patch")? as usize,
        patch_mean: number("frontend.patch.mean").unwrap_or(0.5) as f32,
        patch_std: number("frontend.patch.std").unwrap_or(0.5) as f32,
        action_labels,
    })
}

impl Native {
    /// Opens the model, checks the contract and binds the state.
    pub fn open(
        path: &Path,
        provider: &Provider,
        package_labels: &[String],
    ) -> Result<Self, String> {
        let session = open_session(path, provider, 1)?;
        let frontend = metadata(&session, path)?;
        if frontend.action_labels != package_labels {
            return Err(format!(
                "the model's action labels ({}) differ from the package manifest's ({})",
                frontend.action_labels.join(","),
                package_labels.join(",")
            ));
        }
        let has_input = |name: &str| session.inputs().iter().any(|i| i.name() == name);
        let has_output = |name: &str| session.outputs().iter().any(|o| o.name() == name);
        for name in ["dmel", "patches", "bytes"] {
            if !has_input(name) {
                return Err(format!("model {} has no input `{name}`", path.display()));
            }
        }
        if !has_output("actions") {
            return Err(format!("model {} has no output `actions`", path.display()));
        }
        let allocator = session.allocator();
        let mut states = Vec::new();
        for input in session.inputs() {
            let Some(name) = input.name().strip_prefix("state_in.") else {
                continue;
            };
            let output = format!("state_out.{name}");
            if !has_output(&output) {
                return Err(format!(
                    "model {}: input `{}` has no matching output `{output}`",
                    path.display(),
                    input.name()
                ));
            }
            let shape: Vec<usize> = input
                .dtype()
                .tensor_shape()
                .map(|s| s.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect())
                .unwrap_or_default();
            if shape.is_empty() || shape.contains(&0) {
                return Err(format!(
                    "model {}: state `{}` must have a fixed shape",
                    path.display(),
                    input.name()
                ));
            }
            let make = || -> Result<Value<TensorValueType<f32>>, String> {
                let mut t = Tensor::<f32>::new(allocator, shape.clone())
                    .map_err(|e| format!("state `{name}`: {e}"))?;
                t.extract_tensor_mut().1.fill(0.0);
                Ok(t)
            };
            states.push(StatePair {
                input: input.name().to_owned(),
                output,
                tensors: [make()?, make()?],
                current: 0,
            });
        }
        if states.is_empty() {
            return Err(format!(
                "model {} has no `state_in.*` inputs: the native kind is stateful",
                path.display()
            ));
        }
        let labels = frontend.action_labels.len();
        let actions =
            Tensor::<f32>::new(allocator, [1usize, labels]).map_err(|e| format!("actions: {e}"))?;
        let dmel = kernels::DmelStream::new(frontend.dmel.clone()).map_err(|e| e.to_string())?;
        let patchify = kernels::Patchify::new(
            frontend.patch,
            [frontend.patch_mean; 3],
            [frontend.patch_std; 3],
        )
        .map_err(|e| e.to_string())?;
        let binding = session
            .create_binding()
            .map_err(|e| format!("IoBinding: {e}"))?;
        let label_index = [
            frontend.action_labels.iter().position(|l| l == "listen"),
            frontend.action_labels.iter().position(|l| l == "speak"),
            frontend
                .action_labels
                .iter()
                .position(|l| l == "backchannel"),
            frontend.action_labels.iter().position(|l| l == "yield"),
        ];
        let mut native = Native {
            has_context: has_input("context"),
            outputs_optional: [
                has_output("text_bytes"),
                has_output("reasoning"),
                has_output("user_activity"),
            ],
            session,
            binding,
            states,
            actions,
            dmel,
            patchify,
            levels: Vec::new(),
            mix: Vec::new(),
            patches: Vec::new(),
            label_index,
            frontend,
        };
        native.bind_fixed()?;
        Ok(native)
    }

    pub fn frontend(&self) -> &NativeFrontEnd {
        &self.frontend
    }

    fn bind_fixed(&mut self) -> Result<(), String> {
        let err = |e: ort::Error| format!("IoBinding: {e}");
        self.binding
            .bind_output("actions", &mut self.actions)
            .map_err(err)?;
        self.bind_dynamic_outputs()?;
        self.bind_states()
    }

    /// Outputs whose shape changes between steps (text bytes) are bound to the device anew
    /// before each step: ONNX Runtime reuses a device-bound output's buffer otherwise.
    fn bind_dynamic_outputs(&mut self) -> Result<(), String> {
        let memory = self.session.allocator().memory_info().to_owned();
        for (present, name) in
            self.outputs_optional
                .into_iter()
                .zip(["text_bytes", "reasoning", "user_activity"])
        {
            if present {
                self.binding
                    .bind_output_to_device(name, &memory)
                    .map_err(|e| format!("IoBinding {name}: {e}"))?;
            }
        }
        Ok(())
    }

    fn bind_states(&mut self) -> Result<(), String> {
        for pair in &mut self.states {
            let (input, output) = if pair.current == 0 {
                let [a, b] = &mut pair.tensors;
                (a, b)
            } else {
                let [a, b] = &mut pair.tensors;
                (b, a)
            };
            self.binding
                .bind_input(pair.input.as_str(), &*input)
                .map_err(|e| format!("IoBinding {}: {e}", pair.input))?;
            self.binding
                .bind_output(pair.output.as_str(), output)
                .map_err(|e| format!("IoBinding {}: {e}", pair.output))?;
        }
        Ok(())
    }

    /// The latest value of state `name` (`state_in.` name without the prefix), copied out.
    pub fn state(&self, name: &str) -> Option<Vec<f32>> {
        let pair = self
            .states
            .iter()
            .find(|p| p.input.strip_prefix("state_in.") == Some(name))?;
        Some(pair.tensors[pair.current].extract_tensor().1.to_vec())
    }

    /// Runs one step with the given inputs; returns (action scores, text bytes, reasoning
    /// trigger, user activity).
    pub fn run(
        &mut self,
        levels: &[u8],
        patches: &[f32],
        bytes: &[i64],
        context: [f32; 2],
    ) -> Result<(Vec<f32>, Vec<u8>, f32, f32), String> {
        let err = |e: ort::Error| format!("native step: {e}");
        let n_mels = self.frontend.dmel.n_mels;
        let per_patch = self.frontend.patch * self.frontend.patch * 3;
        let dmel =
            Tensor::<u8>::from_array(([1usize, levels.len() / n_mels, n_mels], levels.to_vec()))
                .map_err(err)?;
        let patches = Tensor::<f32>::from_array((
            [1usize, patches.len() / per_patch, per_patch],
            patches.to_vec(),
        ))
        .map_err(err)?;
        let bytes =
            Tensor::<i64>::from_array(([1usize, bytes.len()], bytes.to_vec())).map_err(err)?;
        self.binding.bind_input("dmel", &dmel).map_err(err)?;
        self.binding.bind_input("patches", &patches).map_err(err)?;
        self.binding.bind_input("bytes", &bytes).map_err(err)?;
        self.bind_dynamic_outputs()?;
        if self.has_context {
            let context =
                Tensor::<f32>::from_array(([1usize, 2], context.to_vec())).map_err(err)?;
            self.binding.bind_input("context", &context).map_err(err)?;
        }
        let (text, reasoning, activity) = {
            let outputs = self.session.run_binding(&self.binding).map_err(err)?;
            let text: Vec<u8> = match outputs.get("text_bytes") {
                Some(v) => v
                    .try_extract_tensor::<i64>()
                    .map_err(err)?
                    .1
                    .iter()
                    .filter_map(|b| u8::try_from(*b).ok())
                    .collect(),
                None => Vec::new(),
            };
            let scalar = |name: &str| -> Result<f32, String> {
                match outputs.get(name) {
                    Some(v) => Ok(v
                        .try_extract_tensor::<f32>()
                        .map_err(err)?
                        .1
                        .first()
                        .copied()
                        .unwrap_or(0.0)),
                    None => Ok(0.0),
                }
            };
            (text, scalar("reasoning")?, scalar("user_activity")?)
        };
        let scores = self.actions.extract_tensor().1.to_vec();
        // The outputs just written become the next step's inputs.
        for pair in &mut self.states {
            pair.current = 1 - pair.current;
        }
        self.bind_states()?;
        Ok((scores, text, reasoning, activity))
    }
}

impl Engine for Native {
    fn step(
        &mut self,
        packet: &Packet,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<StepInfo, String> {
        let header = &packet.header;
        if header.audio_rate != self.frontend.dmel.sample_rate {
            return Err(format!(
                "the micro-turn audio is at {} Hz; the model needs {} Hz",
                header.audio_rate, self.frontend.dmel.sample_rate
            ));
        }
        // Every participant's audio, mixed: the contract has one audio stream.
        self.mix.clear();
        self.mix.resize(header.samples_per_track as usize, 0.0);
        for track in &packet.audio {
            for (m, s) in self.mix.iter_mut().zip(&track.samples) {
                *m += *s;
            }
        }
        self.levels.clear();
        let levels = &mut self.levels;
        self.dmel
            .push(&self.mix, &mut |frame| levels.extend_from_slice(frame))
            .map_err(|e| format!("dMel: {e}"))?;
        // The newest frame of the micro-turn, if its sides are multiples of the patch size.
        self.patches.clear();
        if let Some(frame) = packet.video.last() {
            let rgb = kernels::RgbFrame::packed_rgb(
                &frame.data,
                frame.width as usize,
                frame.height as usize,
            );
            if let Ok((across, down, per)) = self
                .patchify
                .grid(frame.width as usize, frame.height as usize)
            {
                self.patches.resize(across * down * per, 0.0);
                self.patchify
                    .run(&rgb, &mut self.patches)
                    .map_err(|e| format!("patches: {e}"))?;
            }
        }
        // Every text item's bytes, and the request id of the last reasoning result.
        let mut bytes = Vec::new();
        let mut request_id = None;
        for item in &packet.text {
            if let Some((_, id)) = item
                .fields
                .iter()
                .find(|(k, _)| k == "request_id" || k == "request-id")
            {
                request_id = id.trim().parse::<u64>().ok();
            } else if item.flags & text_flags::LOOPBACK == 0 {
                conversation.record_text(item, now, out);
            }
            bytes.extend(item.text.bytes().map(i64::from));
        }
        let agent = conversation.agent_speaking(header.start);
        let context = [
            if agent { 1.0 } else { 0.0 },
            if conversation.awaiting_result() {
                1.0
            } else {
                0.0
            },
        ];
        let levels = std::mem::take(&mut self.levels);
        let patches = std::mem::take(&mut self.patches);
        let result = self.run(&levels, &patches, &bytes, context);
        self.levels = levels;
        self.patches = patches;
        let (scores, text, reasoning, activity) = result?;

        if reasoning >= 0.5 {
            conversation.user_turn_ended(Vec::new(), "native", now, None, now, out);
        }
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        let [_, speak, backchannel, yield_] = self.label_index;
        if best.is_some() && best == yield_ {
            if agent {
                conversation.barge_in(header.start, "user", now, out);
            }
        } else if best.is_some() && best == speak {
            let text = String::from_utf8_lossy(&text).into_owned();
            if !text.trim().is_empty() {
                conversation.say(text, request_id, now, out);
            }
        } else if best.is_some() && best == backchannel {
            conversation.backchannel(now, out);
        }
        Ok(StepInfo {
            speech_probability: activity,
            user_busy: activity >= 0.5,
        })
    }

    fn finish(
        &mut self,
        _now: u64,
        _conversation: &mut Conversation,
        _out: &mut Vec<Action>,
    ) -> Result<(), String> {
        Ok(())
    }

    fn reset(&mut self) {
        for pair in &mut self.states {
            for t in &mut pair.tensors {
                t.extract_tensor_mut().1.fill(0.0);
            }
        }
        self.dmel.reset();
    }

    fn consumes_text(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "native"
    }
}
