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
    #[error(
        "voice model {path} could not be loaded by ONNX Runtime (corrupt or not a Piper voice?): {reason}"
    )]
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

/// Where a voice delivers a phrase while it synthesises it.
pub trait SynthesisSink {
    /// Sample offsets (from the start of the phrase's audio) where each spoken word ends, when
    /// the voice knows them. Called before the audio.
    fn word_ends(&mut self, ends: Vec<usize>);
    /// The next piece of audio. Returns `false` when nobody wants the rest (the phrase was
    /// dropped), and the voice stops early.
    fn audio(&mut self, samples: &[f32]) -> bool;
}

/// A loaded voice that turns a phrase into mono float samples at [`Voice::sample_rate`].
pub trait Voice: Send {
    fn sample_rate(&self) -> u32;
    /// Synthesises one phrase into `sink`, in one or more pieces. Nothing pronounceable gives
    /// no audio.
    fn synthesize(
        &mut self,
        text: &str,
        params: &SynthParams,
        sink: &mut dyn SynthesisSink,
    ) -> Result<(), VoiceError>;

    /// Synthesises `text` ahead so that a later [`Voice::synthesize`] of it starts at once.
    /// Returns whether anything was kept; a voice without a phrase cache keeps nothing.
    fn prepare(&mut self, _text: &str, _params: &SynthParams) -> Result<bool, VoiceError> {
        Ok(false)
    }
}

/// Collects a whole phrase.
#[derive(Debug, Default)]
pub struct Collect {
    pub samples: Vec<f32>,
    pub word_ends: Option<Vec<usize>>,
    /// How many pieces the audio came in.
    pub pieces: usize,
}

impl SynthesisSink for Collect {
    fn word_ends(&mut self, ends: Vec<usize>) {
        self.word_ends = Some(ends);
    }

    fn audio(&mut self, samples: &[f32]) -> bool {
        self.samples.extend_from_slice(samples);
        self.pieces += 1;
        true
    }
}

/// Synthesises a whole phrase into memory.
pub fn synthesize_all(
    voice: &mut dyn Voice,
    text: &str,
    params: &SynthParams,
) -> Result<Collect, VoiceError> {
    let mut collect = Collect::default();
    voice.synthesize(text, params, &mut collect)?;
    Ok(collect)
}

/// Keeps the audio of short phrases that come again and again (fillers such as "One moment.",
/// back-channels such as "mm-hm"): a repeated phrase starts at once instead of after a
/// synthesis. Phrases longer than `max_chars` and phrases whose synthesis was cut short are
/// not kept, except that a *prepare* keeps phrases up to [`CachedVoice::with_prepared_chars`]
/// (an answer's sentences, synthesised ahead); the least recently used phrase goes first when
/// `max_phrases` are kept.
pub struct CachedVoice {
    inner: Box<dyn Voice>,
    entries: std::collections::VecDeque<CachedPhrase>,
    max_phrases: usize,
    max_chars: usize,
    /// Longest phrase [`Voice::prepare`] keeps (a sentence of an answer, not only a filler).
    max_prepared_chars: usize,
}

struct CachedPhrase {
    text: String,
    params: SynthParams,
    samples: Vec<f32>,
    word_ends: Option<Vec<usize>>,
}

/// Replayed audio goes out in pieces of this many samples (about 90 ms at 22 050 Hz), so a
/// yield can still stop it early.
const CACHE_PIECE: usize = 2048;

impl CachedVoice {
    pub fn new(inner: Box<dyn Voice>, max_phrases: usize, max_chars: usize) -> Self {
        CachedVoice {
            inner,
            entries: std::collections::VecDeque::with_capacity(max_phrases),
            max_phrases,
            max_chars,
            max_prepared_chars: max_chars,
        }
    }

    /// Lets [`Voice::prepare`] keep phrases of up to `max_chars` characters (at least the
    /// limit for phrases kept after a synthesis).
    pub fn with_prepared_chars(mut self, max_chars: usize) -> Self {
        self.max_prepared_chars = max_chars.max(self.max_chars);
        self
    }

    /// Phrases kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a phrase of `text` is kept, with `max_chars` the limit that applies (a
    /// synthesis or a *prepare*).
    fn keeps(&self, text: &str, max_chars: usize) -> bool {
        self.max_phrases > 0 && text.chars().count() <= max_chars
    }

    fn position(&self, text: &str, params: &SynthParams) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.text == text && e.params == *params)
    }

    fn keep(&mut self, text: &str, params: &SynthParams, copy: Collect) {
        if self.entries.len() >= self.max_phrases {
            self.entries.pop_front();
        }
        self.entries.push_back(CachedPhrase {
            text: text.to_owned(),
            params: *params,
            samples: copy.samples,
            word_ends: copy.word_ends,
        });
    }
}

/// Passes a synthesis through to the real sink and keeps a copy.
struct Tee<'a> {
    sink: &'a mut dyn SynthesisSink,
    copy: Collect,
    complete: bool,
}

impl SynthesisSink for Tee<'_> {
    fn word_ends(&mut self, ends: Vec<usize>) {
        self.copy.word_ends = Some(ends.clone());
        self.sink.word_ends(ends);
    }

    fn audio(&mut self, samples: &[f32]) -> bool {
        self.copy.samples.extend_from_slice(samples);
        let wanted = self.sink.audio(samples);
        self.complete &= wanted;
        wanted
    }
}

impl Voice for CachedVoice {
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }

    fn synthesize(
        &mut self,
        text: &str,
        params: &SynthParams,
        sink: &mut dyn SynthesisSink,
    ) -> Result<(), VoiceError> {
        if let Some(index) = self.position(text, params) {
            // Most recently used goes to the back.
            if let Some(entry) = self.entries.remove(index) {
                if let Some(ends) = &entry.word_ends {
                    sink.word_ends(ends.clone());
                }
                for piece in entry.samples.chunks(CACHE_PIECE) {
                    if !sink.audio(piece) {
                        break;
                    }
                }
                self.entries.push_back(entry);
            }
            return Ok(());
        }
        if !self.keeps(text, self.max_chars) {
            return self.inner.synthesize(text, params, sink);
        }
        let mut tee = Tee {
            sink,
            copy: Collect::default(),
            complete: true,
        };
        self.inner.synthesize(text, params, &mut tee)?;
        if tee.complete {
            let copy = tee.copy;
            self.keep(text, params, copy);
        }
        Ok(())
    }

    fn prepare(&mut self, text: &str, params: &SynthParams) -> Result<bool, VoiceError> {
        if !self.keeps(text, self.max_prepared_chars) {
            return Ok(false);
        }
        if self.position(text, params).is_some() {
            return Ok(true);
        }
        let mut copy = Collect::default();
        self.inner.synthesize(text, params, &mut copy)?;
        self.keep(text, params, copy);
        Ok(true)
    }
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

/// Frames decoded first (about 0.28 s of audio at 22 050 Hz): small, so the first audio
/// leaves early.
const FIRST_DECODE_FRAMES: usize = 24;
/// Frames decoded at a time after the first piece.
const DECODE_FRAMES: usize = 128;
/// Frames of context on each side of a decoded piece. The decoder's receptive field is smaller
/// than this: pieces join to within 1e-6 of a whole-phrase decode (see models/piper/README.md).
const DECODE_MARGIN: usize = 12;
/// Frames of the start symbol's silence kept before the speech (the model often predicts
/// half a second there), and of the end symbol's silence kept after it.
const LEAD_FRAMES: usize = 4;
const TAIL_FRAMES: usize = 8;

/// How the model runs.
enum Engine {
    /// The exported model in one piece: the whole phrase at once.
    Whole(Session),
    /// The encoder and decoder graphs made by `models/piper/split.py`: the latent is decoded
    /// in pieces, and the phoneme durations give word times.
    Split {
        encoder: Session,
        decoder: Session,
        /// Audio samples per latent frame.
        hop: usize,
    },
}

/// A Piper voice in ONNX Runtime.
pub struct PiperVoice {
    engine: Engine,
    config: VoiceConfig,
    ids: PhonemeIdMap,
    espeak: Espeak,
    /// Multi-speaker voices have a `sid` input; this element speaks with speaker 0.
    has_speaker_input: bool,
}

/// The split graphs of a voice, if `models/piper/split.py` made them: beside the voice
/// (`<name>.encoder.onnx`, `<name>.decoder.onnx`), or, for the cached default voice only, in
/// `<cache>/derived/piper/` (where `models/piper/derive.sh` puts them, re-made whenever the
/// cached voice changes).
pub fn split_paths(model: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = model.file_name()?.to_str()?;
    let stem = name.strip_suffix(".onnx").unwrap_or(name);
    let mut candidates = vec![model.parent()?.to_path_buf()];
    let cached = interaction_runtime::models_dir().join("piper").join(name);
    if model.canonicalize().ok() == cached.canonicalize().ok() {
        candidates.push(interaction_runtime::cache_root().join("derived/piper"));
    }
    candidates.into_iter().find_map(|dir| {
        let encoder = dir.join(format!("{stem}.encoder.onnx"));
        let decoder = dir.join(format!("{stem}.decoder.onnx"));
        (encoder.is_file() && decoder.is_file()).then_some((encoder, decoder))
    })
}

fn session(model: &Path, threads: usize) -> Result<Session, VoiceError> {
    let bad_model = |reason: String| VoiceError::BadModel {
        path: model.to_owned(),
        reason,
    };
    let environment = interaction_runtime::ort_environment()?;
    let mut builder = Session::builder(environment)
        .map_err(|e| bad_model(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| bad_model(e.to_string()))?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| bad_model(e.to_string()))?;
    }
    // Idle worker threads sleep instead of spinning: on a box shared with other models (and
    // other processes), spinning threads steal the cores the synthesis needs.
    builder = builder
        .with_config_entry("session.intra_op.allow_spinning", "0")
        .map_err(|e| bad_model(e.to_string()))?;
    builder
        .commit_from_file(model)
        .map_err(|e| bad_model(e.to_string()))
}

fn has_names(session: &Session, inputs: &[&str], outputs: &[&str]) -> bool {
    inputs
        .iter()
        .all(|name| session.inputs().iter().any(|i| i.name() == *name))
        && outputs
            .iter()
            .all(|name| session.outputs().iter().any(|o| o.name() == *name))
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

        let bad_model = |reason: String| VoiceError::BadModel {
            path: model.to_owned(),
            reason,
        };
        let split = split_paths(model);
        let whole = match &split {
            // The split graphs replace the whole model; a multi-speaker voice is never split.
            Some(_) => None,
            None => Some(session(model, threads)?),
        };
        let has_speaker_input = whole
            .as_ref()
            .is_some_and(|whole| whole.inputs().iter().any(|i| i.name() == "sid"));
        if let Some(whole) = &whole {
            let inputs: Vec<&str> = whole.inputs().iter().map(|i| i.name()).collect();
            for needed in ["input", "input_lengths", "scales"] {
                if !inputs.contains(&needed) {
                    return Err(bad_model(format!(
                        "the model has no `{needed}` input (inputs: {inputs:?})"
                    )));
                }
            }
            if !whole.outputs().iter().any(|o| o.name() == "output") {
                return Err(bad_model("the model has no `output` output".into()));
            }
        }
        let engine = match (whole, split) {
            (Some(whole), _) => Engine::Whole(whole),
            (None, Some((encoder, decoder))) => Self::load_split(&encoder, &decoder, threads)?,
            (None, None) => unreachable!("one of the two is loaded"),
        };
        let mut voice = Self {
            engine,
            config,
            ids,
            espeak,
            has_speaker_input,
        };
        // A first run: checks the model end to end and takes ONNX Runtime's first-run cost
        // at start instead of on the first phrase.
        let ids = voice.ids.ids("ə");
        voice.run(ids, &SynthParams::default(), &mut Collect::default())?;
        Ok(voice)
    }

    fn load_split(encoder: &Path, decoder: &Path, threads: usize) -> Result<Engine, VoiceError> {
        let encoder_session = session(encoder, threads)?;
        let mut decoder_session = session(decoder, threads)?;
        if !has_names(
            &encoder_session,
            &["input", "input_lengths", "scales"],
            &["z", "durations"],
        ) || !has_names(&decoder_session, &["z"], &["output"])
        {
            return Err(VoiceError::BadModel {
                path: encoder.to_owned(),
                reason: "not made by models/piper/split.py (inputs or outputs differ)".into(),
            });
        }
        // The hop: decode two frames of a zero latent of the encoder's width.
        let channels = match encoder_session
            .outputs()
            .iter()
            .find(|o| o.name() == "z")
            .and_then(|o| o.dtype().tensor_shape().map(|shape| shape.to_vec()))
        {
            Some(shape) if shape.len() == 3 && shape[1] > 0 => shape[1] as usize,
            _ => 192,
        };
        let error = |e: ort::Error| VoiceError::Inference(e.to_string());
        let z = Tensor::<f32>::from_array(([1usize, channels, 2], vec![0.0f32; channels * 2]))
            .map_err(error)?;
        let outputs = decoder_session.run(ort::inputs!["z" => z]).map_err(error)?;
        let (_, audio) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(error)?;
        let hop = audio.len() / 2;
        drop(outputs);
        if hop == 0 {
            return Err(VoiceError::Inference("the decoder gives no audio".into()));
        }
        Ok(Engine::Split {
            encoder: encoder_session,
            decoder: decoder_session,
            hop,
        })
    }

    /// Whether the split (streaming) graphs run.
    pub fn is_streaming(&self) -> bool {
        matches!(self.engine, Engine::Split { .. })
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

    /// Runs the model on phoneme ids into `sink`.
    pub fn run(
        &mut self,
        ids: Vec<i64>,
        params: &SynthParams,
        sink: &mut dyn SynthesisSink,
    ) -> Result<(), VoiceError> {
        let inference = self.config.inference;
        let rate = params.rate.clamp(0.1, 10.0) as f32;
        let scales = vec![
            params.noise_scale.unwrap_or(inference.noise_scale),
            inference.length_scale / rate,
            params.noise_w.unwrap_or(inference.noise_w),
        ];
        let length = ids.len();
        let error = |e: ort::Error| VoiceError::Inference(e.to_string());
        let spaces = self.ids.space_ids();
        let input = Tensor::<i64>::from_array(([1usize, length], ids.clone())).map_err(error)?;
        let lengths = Tensor::<i64>::from_array(([1usize], vec![length as i64])).map_err(error)?;
        let scales = Tensor::<f32>::from_array(([3usize], scales)).map_err(error)?;
        match &mut self.engine {
            Engine::Whole(session) => {
                let outputs = if self.has_speaker_input {
                    let speaker =
                        Tensor::<i64>::from_array(([1usize], vec![0i64])).map_err(error)?;
                    session.run(ort::inputs![
                        "input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => speaker
                    ])
                } else {
                    session.run(
                        ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales],
                    )
                }
                .map_err(error)?;
                let (_, audio) = outputs["output"]
                    .try_extract_tensor::<f32>()
                    .map_err(error)?;
                let audio: Vec<f32> = audio.iter().map(|s| s.clamp(-1.0, 1.0)).collect();
                sink.audio(&audio);
                Ok(())
            }
            Engine::Split {
                encoder,
                decoder,
                hop,
            } => {
                let hop = *hop;
                let outputs = encoder
                    .run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
                    .map_err(error)?;
                let (shape, z) = outputs["z"].try_extract_tensor::<f32>().map_err(error)?;
                if shape.len() != 3 {
                    return Err(VoiceError::Inference(format!("z has shape {shape:?}")));
                }
                let (channels, frames) = (shape[1] as usize, shape[2] as usize);
                let z = z.to_vec();
                let (_, durations) = outputs["durations"]
                    .try_extract_tensor::<f32>()
                    .map_err(error)?;
                let durations: Vec<usize> = durations.iter().map(|d| d.max(0.0) as usize).collect();
                drop(outputs);

                // Trim the long silences the model puts on the start and end symbols.
                let lead = durations
                    .first()
                    .map_or(0, |d| d.saturating_sub(LEAD_FRAMES));
                let tail = durations
                    .last()
                    .map_or(0, |d| d.saturating_sub(TAIL_FRAMES));
                let (first, end) = (
                    lead.min(frames),
                    frames.saturating_sub(tail).max(lead.min(frames)),
                );

                // Word ends: the frame where each space symbol starts, and the end of speech.
                let mut ends = Vec::new();
                let mut frame = 0usize;
                for (id, duration) in ids.iter().zip(&durations) {
                    if spaces.contains(id) {
                        ends.push(frame.saturating_sub(first) * hop);
                    }
                    frame += duration;
                }
                let speech_end = frame.saturating_sub(durations.last().copied().unwrap_or(0));
                ends.push(speech_end.saturating_sub(first) * hop);
                ends.dedup();
                sink.word_ends(ends);

                let mut start = first;
                let mut piece = FIRST_DECODE_FRAMES;
                while start < end {
                    let stop = (start + piece).min(end);
                    let from = start
                        .saturating_sub(DECODE_MARGIN)
                        .max(first.saturating_sub(DECODE_MARGIN));
                    let to = (stop + DECODE_MARGIN).min(frames);
                    let width = to - from;
                    let mut window = Vec::with_capacity(channels * width);
                    for channel in 0..channels {
                        let row = channel * frames;
                        window.extend_from_slice(&z[row + from..row + to]);
                    }
                    let window = Tensor::<f32>::from_array(([1usize, channels, width], window))
                        .map_err(error)?;
                    let outputs = decoder.run(ort::inputs!["z" => window]).map_err(error)?;
                    let (_, audio) = outputs["output"]
                        .try_extract_tensor::<f32>()
                        .map_err(error)?;
                    let skip = ((start - from) * hop).min(audio.len());
                    let take = ((stop - start) * hop).min(audio.len() - skip);
                    let audio: Vec<f32> = audio[skip..skip + take]
                        .iter()
                        .map(|s| s.clamp(-1.0, 1.0))
                        .collect();
                    drop(outputs);
                    if !sink.audio(&audio) {
                        return Ok(());
                    }
                    start = stop;
                    piece = DECODE_FRAMES;
                }
                Ok(())
            }
        }
    }
}

impl Voice for PiperVoice {
    fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    fn synthesize(
        &mut self,
        text: &str,
        params: &SynthParams,
        sink: &mut dyn SynthesisSink,
    ) -> Result<(), VoiceError> {
        let ids = self.phoneme_ids(text)?;
        if ids.is_empty() {
            return Ok(());
        }
        self.run(ids, params, sink)
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

    fn synthesize(
        &mut self,
        text: &str,
        params: &SynthParams,
        sink: &mut dyn SynthesisSink,
    ) -> Result<(), VoiceError> {
        let speed = (ESPEAK_WORDS_PER_MINUTE * params.rate)
            .clamp(80.0, 500.0)
            .round();
        let speed = format!("{speed}");
        let wav = self.espeak.run(&["--stdout", "-s", &speed], text)?;
        let (sample_rate, samples) = parse_wav(&wav)?;
        if sample_rate != self.sample_rate {
            return Err(VoiceError::BadAudio(format!(
                "rate changed from {} to {sample_rate}",
                self.sample_rate
            )));
        }
        sink.audio(&samples);
        Ok(())
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
            let fmt = bytes
                .get(body..body + 16)
                .ok_or_else(|| bad("short fmt chunk"))?;
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

    /// Counts syntheses; says each character as one sample.
    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Voice for Counting {
        fn sample_rate(&self) -> u32 {
            16_000
        }

        fn synthesize(
            &mut self,
            text: &str,
            _params: &SynthParams,
            sink: &mut dyn SynthesisSink,
        ) -> Result<(), VoiceError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let samples: Vec<f32> = text.chars().map(|c| c as u32 as f32).collect();
            for piece in samples.chunks(3) {
                if !sink.audio(piece) {
                    break;
                }
            }
            Ok(())
        }
    }

    /// Takes `limit` pieces, then refuses the rest.
    struct Impatient {
        limit: usize,
        got: Vec<f32>,
    }

    impl SynthesisSink for Impatient {
        fn word_ends(&mut self, _ends: Vec<usize>) {}

        fn audio(&mut self, samples: &[f32]) -> bool {
            self.got.extend_from_slice(samples);
            self.limit = self.limit.saturating_sub(1);
            self.limit > 0
        }
    }

    #[test]
    fn repeated_short_phrases_come_from_the_cache() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut voice = CachedVoice::new(Box::new(Counting(calls.clone())), 2, 20);
        let params = SynthParams::default();
        let first = synthesize_all(&mut voice, "One moment.", &params).unwrap();
        let again = synthesize_all(&mut voice, "One moment.", &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(first.samples, again.samples);
        assert_eq!(again.samples.len(), "One moment.".len());
        // Other parameters are another phrase.
        let faster = SynthParams {
            rate: 1.5,
            ..params
        };
        synthesize_all(&mut voice, "One moment.", &faster).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Long phrases are never kept.
        let long = "This sentence is longer than twenty characters.";
        synthesize_all(&mut voice, long, &params).unwrap();
        synthesize_all(&mut voice, long, &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        // A phrase cut short is not kept; the cache holds at most two phrases.
        let mut cut = Impatient {
            limit: 1,
            got: Vec::new(),
        };
        voice.synthesize("Let me see.", &params, &mut cut).unwrap();
        assert_eq!(cut.got.len(), 3);
        synthesize_all(&mut voice, "Let me see.", &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 6);
        assert_eq!(voice.len(), 2);
        // "One moment." at rate 1.0 was the least recently used: gone.
        synthesize_all(&mut voice, "One moment.", &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
    }

    #[test]
    fn prepared_phrases_play_without_a_synthesis() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut voice = CachedVoice::new(Box::new(Counting(calls.clone())), 4, 20);
        let params = SynthParams::default();
        assert!(voice.prepare("One moment.", &params).unwrap());
        // Preparing again does not synthesise again; a long phrase is not kept.
        assert!(voice.prepare("One moment.", &params).unwrap());
        assert!(
            !voice
                .prepare("A phrase far longer than twenty.", &params)
                .unwrap()
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let spoken = synthesize_all(&mut voice, "One moment.", &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(spoken.samples.len(), "One moment.".len());
    }

    #[test]
    fn a_prepared_sentence_of_an_answer_plays_without_a_synthesis() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut voice =
            CachedVoice::new(Box::new(Counting(calls.clone())), 4, 20).with_prepared_chars(80);
        let params = SynthParams::default();
        let sentence = "The museum opens at ten on Sundays.";
        assert!(voice.prepare(sentence, &params).unwrap());
        let spoken = synthesize_all(&mut voice, sentence, &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(spoken.samples.len(), sentence.len());
        // Not prepared and longer than 20: synthesised each time, never kept.
        let other = "And it closes at six in the evening.";
        synthesize_all(&mut voice, other, &params).unwrap();
        synthesize_all(&mut voice, other, &params).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    use super::*;

    #[test]
    fn espeak_voice_speaks_at_its_own_rate() {
        let mut voice = EspeakVoice::load("en-us").unwrap();
        assert_eq!(voice.sample_rate(), 22_050);
        let slow = synthesize_all(
            &mut voice,
            "one two three four five",
            &SynthParams::default(),
        )
        .unwrap()
        .samples;
        let fast = synthesize_all(
            &mut voice,
            "one two three four five",
            &SynthParams {
                rate: 2.0,
                ..SynthParams::default()
            },
        )
        .unwrap()
        .samples;
        // Five words at 175 words per minute: about 1.7 s.
        let seconds = slow.len() as f64 / 22_050.0;
        assert!((1.0..3.0).contains(&seconds), "{seconds} s");
        assert!(
            fast.len() * 10 < slow.len() * 7,
            "{} vs {}",
            fast.len(),
            slow.len()
        );
        let peak = slow.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.1, "peak {peak}");
        assert!(matches!(
            EspeakVoice::load("nonexistentvoice"),
            Err(VoiceError::Phonemes(_))
        ));
    }

    /// The pieces decoded from the split graphs are the whole model's audio (without the long
    /// leading silence), and the word times cover the phrase.
    #[test]
    fn split_graphs_stream_the_same_audio_as_the_whole_model() {
        let cached = interaction_runtime::model_file("piper/en_US-joe-medium.onnx").unwrap();
        let Some(_) = split_paths(&cached) else {
            panic!("run models/piper/derive.sh (scripts/setup.sh does) to split the voice");
        };
        // A hard link under another name: the same model, but no split graphs beside it.
        let dir = interaction_runtime::cache_root().join(format!("test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let alias = dir.join("alias.onnx");
        std::fs::hard_link(&cached, &alias).unwrap();
        std::fs::hard_link(config_path(&cached), config_path(&alias)).unwrap();
        let mut whole_voice = PiperVoice::load(&alias, 0).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let mut split_voice = PiperVoice::load(&cached, 0).unwrap();
        assert!(split_voice.is_streaming() && !whole_voice.is_streaming());

        let text = "The quick brown fox jumps over the lazy dog near the river bank.";
        let params = SynthParams {
            noise_scale: Some(0.0),
            noise_w: Some(0.0),
            ..SynthParams::default()
        };
        let whole = synthesize_all(&mut whole_voice, text, &params).unwrap();
        let split = synthesize_all(&mut split_voice, text, &params).unwrap();
        assert_eq!(whole.pieces, 1);
        assert!(split.pieces >= 3, "{} pieces", split.pieces);
        let ends = split.word_ends.expect("word times");
        assert_eq!(ends.len(), 13, "{ends:?}");
        assert!(ends.windows(2).all(|w| w[0] < w[1]));
        assert!(*ends.last().unwrap() <= split.samples.len());

        // The split audio is the whole audio from some frame on (the trimmed lead: with
        // noise_w = 0 the start symbol is short and nothing may be trimmed).
        let hop = 256;
        let compare = 20_000.min(split.samples.len());
        let (best_lead, best_error) = (0..80)
            .map(|lead| {
                let error = whole.samples[lead * hop..lead * hop + compare]
                    .iter()
                    .zip(&split.samples[..compare])
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                (lead, error)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(
            best_error < 1e-3,
            "max difference {best_error} at lead {best_lead}"
        );
        let tail = whole.samples.len() as i64 - (best_lead * hop + split.samples.len()) as i64;
        assert!(tail >= 0 && tail % hop as i64 == 0, "tail {tail}");
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
