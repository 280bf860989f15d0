//! The voices behind `speechsynth`: a small trait and its two backends.
//!
//! - [`PiperVoice`]: a Piper VITS voice (`.onnx` + `.onnx.json`) run through ONNX Runtime, with
//!   phonemes from the `espeak-ng` program.
//! - [`EspeakVoice`]: the `espeak-ng` program alone, as a tiny fallback.
//!
//! Both are loaded (and checked) at start, so that a missing or broken voice is an error when
//! the element starts, not in the middle of a stream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

use crate::phonemes::{Espeak, PhonemeError, PhonemeIdMap};

/// Per-phrase synthesis parameters (read from the element's settings for every phrase).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthParams {
    /// Speaking rate: 1.0 is the voice's own pace, 2.0 twice as fast.
    pub rate: f64,
    /// Piper's `noise_scale` (voice variation); `None` takes the voice's default.
    pub noise_scale: Option<f32>,
    /// Piper's `noise_w` (phoneme duration variation); `None` takes the voice's default.
    pub noise_w: Option<f32>,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            rate: 1.0,
            noise_scale: None,
            noise_w: None,
        }
    }
}

/// What can go wrong with a voice. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("voice model {path} does not exist")]
    MissingModel { path: PathBuf },
    #[error(
        "voice config {path} does not exist: a Piper voice needs its `.onnx.json` beside the \
         `.onnx` file"
    )]
    MissingConfig { path: PathBuf },
    #[error("voice config {path} is not a valid Piper voice config: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("voice model {path} could not be loaded by ONNX Runtime (corrupt or not a Piper voice?): {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error(transparent)]
    Runtime(#[from] interaction_runtime::Error),
    #[error(transparent)]
    Phonemes(#[from] PhonemeError),
    #[error("espeak-ng gave unreadable audio: {0}")]
    BadAudio(String),
    #[error("synthesis failed: {0}")]
    Inference(String),
}

/// A loaded voice that turns a phrase into mono float samples at [`Voice::sample_rate`].
pub trait Voice: Send {
    fn sample_rate(&self) -> u32;
    /// Synthesises one phrase. Empty output is allowed (nothing pronounceable).
    fn synthesize(&mut self, text: &str, params: &SynthParams) -> Result<Vec<f32>, VoiceError>;
}

/// The parts of a Piper `.onnx.json` this element uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct VoiceConfig {
    pub audio: AudioConfig,
    #[serde(default)]
    pub espeak: EspeakConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    pub phoneme_type: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct EspeakConfig {
    pub voice: String,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            voice: "en-us".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct InferenceConfig {
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

/// The config file that belongs to a Piper model: `<model>.json`.
pub fn config_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// A Piper voice in ONNX Runtime.
pub struct PiperVoice {
    session: Session,
    config: VoiceConfig,
    ids: PhonemeIdMap,
    espeak: Espeak,
    /// Multi-speaker voices have a `sid` input; this element speaks with speaker 0.
    has_speaker_input: bool,
}

impl PiperVoice {
    /// Loads and checks a voice: the model, its config, the phoneme map, the model's inputs
    /// and outputs, and that espeak-ng runs with the voice's language. `threads` = 0 lets ONNX
    /// Runtime choose.
    pub fn load(model: &Path, threads: usize) -> Result<Self, VoiceError> {
        if !model.is_file() {
            return Err(VoiceError::MissingModel {
                path: model.to_owned(),
            });
        }
        let config_file = config_path(model);
        if !config_file.is_file() {
            return Err(VoiceError::MissingConfig { path: config_file });
        }
        let bad_config = |reason: String| VoiceError::BadConfig {
            path: config_file.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&config_file).map_err(|e| bad_config(e.to_string()))?;
        let config: VoiceConfig =
            serde_json::from_str(&text).map_err(|e| bad_config(e.to_string()))?;
        if let Some(kind) = &config.phoneme_type
            && kind != "espeak"
        {
            return Err(bad_config(format!(
                "phoneme_type is `{kind}`; only `espeak` voices are supported"
            )));
        }
        if config.audio.sample_rate == 0 {
            return Err(bad_config("audio.sample_rate is 0".into()));
        }
        let ids = PhonemeIdMap::new(&config.phoneme_id_map).map_err(bad_config)?;

        let espeak = Espeak::new(&config.espeak.voice);
        // Fails early if espeak-ng is missing or does not know the language.
        espeak.check()?;

        let environment = interaction_runtime::ort_environment()?;
        let bad_model = |reason: String| VoiceError::BadModel {
            path: model.to_owned(),
            reason,
        };
        let mut builder = Session::builder(environment)
            .map_err(|e| bad_model(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| bad_model(e.to_string()))?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| bad_model(e.to_string()))?;
        }
        let session = builder
            .commit_from_file(model)
            .map_err(|e| bad_model(e.to_string()))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for needed in ["input", "input_lengths", "scales"] {
            if !inputs.contains(&needed) {
                return Err(bad_model(format!(
                    "the model has no `{needed}` input (inputs: {inputs:?})"
                )));
            }
        }
        let has_speaker_input = inputs.contains(&"sid");
        if !session.outputs().iter().any(|o| o.name() == "output") {
            return Err(bad_model("the model has no `output` output".into()));
        }
        Ok(Self {
            session,
            config,
            ids,
            espeak,
            has_speaker_input,
        })
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// The phoneme ids of a phrase (empty when nothing is pronounceable).
    pub fn phoneme_ids(&self, text: &str) -> Result<Vec<i64>, VoiceError> {
        let ipa = self.espeak.phrase_ipa(text)?;
        if ipa.trim().is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.ids.ids(&ipa))
    }

    /// Runs the model on phoneme ids.
    pub fn synthesize_ids(
        &mut self,
        ids: Vec<i64>,
        params: &SynthParams,
    ) -> Result<Vec<f32>, VoiceError> {
        let inference = self.config.inference;
        let rate = params.rate.clamp(0.1, 10.0) as f32;
        let scales = vec![
            params.noise_scale.unwrap_or(inference.noise_scale),
            inference.length_scale / rate,
            params.noise_w.unwrap_or(inference.noise_w),
        ];
        let length = ids.len();
        let error = |e: ort::Error| VoiceError::Inference(e.to_string());
        let input = Tensor::<i64>::from_array(([1usize, length], ids)).map_err(error)?;
        let lengths = Tensor::<i64>::from_array(([1usize], vec![length as i64])).map_err(error)?;
        let scales = Tensor::<f32>::from_array(([3usize], scales)).map_err(error)?;
        let outputs = if self.has_speaker_input {
            let speaker = Tensor::<i64>::from_array(([1usize], vec![0i64])).map_err(error)?;
            self.session.run(ort::inputs![
                "input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => speaker
            ])
        } else {
            self.session.run(
                ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales],
            )
        }
        .map_err(error)?;
        let (_, audio) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(error)?;
        Ok(audio.iter().map(|s| s.clamp(-1.0, 1.0)).collect())
    }
}

impl Voice for PiperVoice {
    fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    fn synthesize(&mut self, text: &str, params: &SynthParams) -> Result<Vec<f32>, VoiceError> {
        let ids = self.phoneme_ids(text)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.synthesize_ids(ids, params)
    }
}

/// espeak-ng alone: a robotic but tiny voice.
pub struct EspeakVoice {
    espeak: Espeak,
    sample_rate: u32,
}

/// espeak-ng's default speed in words per minute.
const ESPEAK_WORDS_PER_MINUTE: f64 = 175.0;

impl EspeakVoice {
    /// Checks that espeak-ng runs with `voice` (a language such as `en-us`) and learns its
    /// sample rate.
    pub fn load(voice: &str) -> Result<Self, VoiceError> {
        let espeak = Espeak::new(voice);
        espeak.check()?;
        let wav = espeak.run(&["--stdout"], "test")?;
        let (sample_rate, _) = parse_wav(&wav)?;
        Ok(Self {
            espeak,
            sample_rate,
        })
    }
}

impl Voice for EspeakVoice {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn synthesize(&mut self, text: &str, params: &SynthParams) -> Result<Vec<f32>, VoiceError> {
        let speed = (ESPEAK_WORDS_PER_MINUTE * params.rate).clamp(80.0, 500.0).round();
        let speed = format!("{speed}");
        let wav = self.espeak.run(&["--stdout", "-s", &speed], text)?;
        let (sample_rate, samples) = parse_wav(&wav)?;
        if sample_rate != self.sample_rate {
            return Err(VoiceError::BadAudio(format!(
                "rate changed from {} to {sample_rate}",
                self.sample_rate
            )));
        }
        Ok(samples)
    }
}

/// Reads espeak-ng's `--stdout` WAV: 16-bit mono PCM. Its size fields are placeholders when
/// it writes to a pipe, so the data runs to the end of the output.
pub fn parse_wav(bytes: &[u8]) -> Result<(u32, Vec<f32>), VoiceError> {
    let bad = |what: &str| VoiceError::BadAudio(what.to_owned());
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a WAV file"));
    }
    let mut offset = 12;
    let mut sample_rate = None;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let size = u32::from_le_bytes([
            bytes[offset + 4],
            bytes[offset + 5],
            bytes[offset + 6],
            bytes[offset + 7],
        ]) as usize;
        let body = offset + 8;
        if id == b"fmt " {
            let fmt = bytes.get(body..body + 16).ok_or_else(|| bad("short fmt chunk"))?;
            let format = u16::from_le_bytes([fmt[0], fmt[1]]);
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            if format != 1 || channels != 1 || bits != 16 {
                return Err(bad("not 16-bit mono PCM"));
            }
            sample_rate = Some(u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]));
        } else if id == b"data" {
            let rate = sample_rate.ok_or_else(|| bad("data before fmt"))?;
            let end = body.saturating_add(size).min(bytes.len());
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect();
            return Ok((rate, samples));
        }
        offset = body.saturating_add(size + (size & 1));
    }
    Err(bad("no data chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn espeak_voice_speaks_at_its_own_rate() {
        let mut voice = EspeakVoice::load("en-us").unwrap();
        assert_eq!(voice.sample_rate(), 22_050);
        let slow = voice
            .synthesize("one two three four five", &SynthParams::default())
            .unwrap();
        let fast = voice
            .synthesize(
                "one two three four five",
                &SynthParams {
                    rate: 2.0,
                    ..SynthParams::default()
                },
            )
            .unwrap();
        // Five words at 175 words per minute: about 1.7 s.
        let seconds = slow.len() as f64 / 22_050.0;
        assert!((1.0..3.0).contains(&seconds), "{seconds} s");
        assert!(fast.len() * 10 < slow.len() * 7, "{} vs {}", fast.len(), slow.len());
        let peak = slow.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.1, "peak {peak}");
        assert!(matches!(
            EspeakVoice::load("nonexistentvoice"),
            Err(VoiceError::Phonemes(_))
        ));
    }

    #[test]
    fn piper_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("speech-voice-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("voice.onnx");
        let error = PiperVoice::load(&model, 1).err().unwrap();
        assert!(matches!(error, VoiceError::MissingModel { .. }), "{error}");
        std::fs::write(&model, b"not a model").unwrap();
        let error = PiperVoice::load(&model, 1).err().unwrap().to_string();
        assert!(error.contains("voice.onnx.json"), "{error}");
        std::fs::write(config_path(&model), b"{\"audio\": {}}").unwrap();
        let error = PiperVoice::load(&model, 1).err().unwrap().to_string();
        assert!(error.contains("not a valid Piper voice config"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
