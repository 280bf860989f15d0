//! The cascade's pretrained models on ONNX Runtime: Silero VAD v6 and Smart Turn v3.2.
//!
//! Input and output names are checked when a model is opened, so a wrong file fails at start.

use std::path::Path;

use ort::session::Session;
use ort::value::{Tensor, TensorValueType, Value};

use crate::device::{Provider, open_session, require_io};

/// Silero VAD v6: speech probability of each 32 ms frame (512 samples at 16 kHz, with 64
/// samples of context in front). The recurrent state (`state` → `stateN`, [2, 1, 128]) lives in
/// a [`VadState`] per participant and is fed back after every frame, so it carries across
/// frames and micro-turns; [`VadState::reset`] clears it (flush, new stream).
pub struct SileroVad {
    session: Session,
    rate: Value<TensorValueType<i64>>,
    input: Tensor<f32>,
    frame_len: usize,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}

const SILERO_STATE: [usize; 3] = [2, 1, 128];

/// One participant's Silero state.
pub struct VadState(Value<TensorValueType<f32>>);

impl std::fmt::Debug for VadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VadState")
    }
}

impl VadState {
    pub fn new() -> Result<Self, String> {
        Tensor::from_array((SILERO_STATE, vec![0.0f32; 256]))
            .map(VadState)
            .map_err(|e| format!("Silero VAD state: {e}"))
    }

    /// Forgets the recurrent state.
    pub fn reset(&mut self) {
        if let Ok((_, data)) = self.0.try_extract_tensor_mut::<f32>() {
            data.fill(0.0);
        }
    }
}

impl SileroVad {
    pub fn open(path: &Path, provider: &Provider, frame_len: usize) -> Result<Self, String> {
        let session = open_session(path, provider, 1)?;
        require_io(
            &session,
            path,
            &["input", "state", "sr"],
            &["output", "stateN"],
        )?;
        let err = |e: ort::Error| format!("Silero VAD {}: {e}", path.display());
        let mut vad = SileroVad {
            session,
            rate: Tensor::from_array(((), vec![16_000i64])).map_err(err)?,
            input: Tensor::from_array(([1usize, frame_len], vec![0.0f32; frame_len]))
                .map_err(err)?,
            frame_len,
        };
        // One frame of silence proves the graph runs with these shapes.
        vad.probability(&vec![0.0; frame_len], &mut VadState::new()?)?;
        Ok(vad)
    }

    /// Speech probability of one frame (`frame_len` values: context then new samples); updates
    /// `state`.
    pub fn probability(&mut self, frame: &[f32], state: &mut VadState) -> Result<f32, String> {
        if frame.len() != self.frame_len {
            return Err(format!(
                "Silero VAD frame has {} values, expected {}",
                frame.len(),
                self.frame_len
            ));
        }
        let err = |e: ort::Error| format!("Silero VAD: {e}");
        self.input
            .try_extract_tensor_mut::<f32>()
            .map_err(err)?
            .1
            .copy_from_slice(frame);
        let mut outputs = self
            .session
            .run(ort::inputs![
                "input" => &self.input,
                "state" => &state.0,
                "sr" => &self.rate
            ])
            .map_err(err)?;
        let probability = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .first()
            .copied()
            .ok_or("Silero VAD gave an empty output")?;
        let next = outputs
            .remove("stateN")
            .ok_or("Silero VAD gave no stateN")?
            .downcast::<TensorValueType<f32>>()
            .map_err(err)?;
        drop(outputs);
        state.0 = next;
        Ok(probability)
    }
}

/// Smart Turn v3.2: the probability that the user's turn is complete, from the last 8 s of
/// audio (Whisper log-mel, 80 × 800, computed by `kernels::WhisperLogMel::smart_turn_into`).
pub struct SmartTurn {
    session: Session,
    mel: kernels::WhisperLogMel,
    features: Tensor<f32>,
}

impl std::fmt::Debug for SmartTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartTurn").finish_non_exhaustive()
    }
}

impl SmartTurn {
    pub fn open(path: &Path, provider: &Provider) -> Result<Self, String> {
        let session = open_session(path, provider, 1)?;
        require_io(&session, path, &["input_features"], &["logits"])?;
        let features = Tensor::from_array((
            [1usize, kernels::WHISPER_N_MELS, kernels::SMART_TURN_FRAMES],
            vec![0.0f32; kernels::WHISPER_N_MELS * kernels::SMART_TURN_FRAMES],
        ))
        .map_err(|e| format!("Smart Turn {}: {e}", path.display()))?;
        let mut model = SmartTurn {
            session,
            mel: kernels::WhisperLogMel::new(),
            features,
        };
        model.probability(&[0.0; 1600])?;
        Ok(model)
    }

    /// Probability that the turn ending with `audio` (16 kHz; the last 8 s are used, shorter
    /// audio is left-padded with zeros) is complete.
    pub fn probability(&mut self, audio: &[f32]) -> Result<f32, String> {
        let err = |e: ort::Error| format!("Smart Turn: {e}");
        let (_, features) = self.features.try_extract_tensor_mut::<f32>().map_err(err)?;
        self.mel
            .smart_turn_into(audio, features)
            .map_err(|e| format!("Smart Turn features: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs!["input_features" => &self.features])
            .map_err(err)?;
        outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .first()
            .copied()
            .ok_or_else(|| "Smart Turn gave an empty output".to_owned())
    }
}
