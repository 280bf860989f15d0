//! Whisper tiny.en: log-mel, encoder, KV-cache greedy decoder, tokens to text.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};

use crate::Error;
use crate::vocab::{END_OF_TEXT, NO_TIMESTAMPS, START_OF_TRANSCRIPT, Vocabulary};

/// Sample rate of the audio [`Whisper::transcribe`] takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// Whisper looks at 30 s windows: 480 000 samples.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE as usize;
/// Log-mel frames in a 30 s window (the default and the most [`WhisperOptions::window_frames`]).
pub const WINDOW_FRAMES: usize = 3000;
/// Samples per log-mel frame.
pub const HOP: usize = 160;
/// Mel channels.
pub const N_MELS: usize = 80;
/// The decoder's positional table length: prompt plus generated tokens must fit.
pub const MAX_POSITIONS: usize = 448;
/// The prompt: `<|startoftranscript|> <|notimestamps|>` (English-only model, no timestamps).
pub const PROMPT: [u32; 2] = [START_OF_TRANSCRIPT, NO_TIMESTAMPS];

/// The folder `models/whisper/derive.sh` writes: `<cache>/derived/whisper-tiny-en`.
pub fn default_model_dir() -> PathBuf {
    interaction_runtime::cache_root()
        .join("derived")
        .join("whisper-tiny-en")
}

/// How [`Whisper`] runs.
#[derive(Debug, Clone)]
pub struct WhisperOptions {
    /// Most tokens generated per window (Whisper's own default is 224). The decoder's
    /// positional table caps it at 446.
    pub max_tokens: usize,
    /// ONNX Runtime intra-op threads per session; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
    /// Log-mel frames per window (10 ms each), 2..=3000. Whisper was trained on 3000 (30 s),
    /// the default. Shorter windows make the encoder several times faster but cost accuracy
    /// (see the crate README); audio longer than the window is cut.
    pub window_frames: usize,
}

impl Default for WhisperOptions {
    fn default() -> Self {
        WhisperOptions {
            max_tokens: 224,
            threads: 0,
            window_frames: WINDOW_FRAMES,
        }
    }
}

/// A transcription result.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The text, trimmed.
    pub text: String,
    /// The generated token ids (without the prompt and without `<|endoftext|>`).
    pub tokens: Vec<u32>,
    /// Decoding stopped at the token bound, not at `<|endoftext|>`.
    pub hit_token_limit: bool,
    /// The audio was longer than the window (30 s by default) and only its start was
    /// transcribed.
    pub audio_truncated: bool,
    /// Time spent on the log-mel, the encoder, and the decoder steps.
    pub timings: Timings,
}

/// Where the time of one [`Whisper::transcribe`] call went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub features: Duration,
    pub encoder: Duration,
    pub decoder: Duration,
    /// Decoder calls: one for the prompt, then one per further token.
    pub decoder_steps: usize,
}

/// The four files of a converted Whisper (`models/whisper/convert.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperFiles {
    pub encoder: PathBuf,
    pub decoder: PathBuf,
    pub vocabulary: PathBuf,
    pub config: PathBuf,
}

impl WhisperFiles {
    /// `encoder.onnx`, `decoder.onnx`, `vocabulary.txt` and `config.json` in `dir` (the f32
    /// graphs).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        WhisperFiles {
            encoder: dir.join("encoder.onnx"),
            decoder: dir.join("decoder.onnx"),
            vocabulary: dir.join("vocabulary.txt"),
            config: dir.join("config.json"),
        }
    }

    /// The same folder with the int8 graphs `encoder-int8.onnx` and `decoder-int8.onnx`
    /// (`models/whisper/quantize.py`), the ones the element's default package uses.
    pub fn int8_in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        WhisperFiles {
            encoder: dir.join("encoder-int8.onnx"),
            decoder: dir.join("decoder-int8.onnx"),
            ..Self::in_dir(dir)
        }
    }
}

/// Whisper tiny.en on ONNX Runtime. See the crate documentation.
pub struct Whisper {
    encoder: Session,
    decoder: Session,
    vocabulary: Vocabulary,
    /// Per text token id (0..=50256): never emitted.
    suppress: Vec<bool>,
    /// Per text token id: not emitted as the first token.
    suppress_begin: Vec<bool>,
    cross_names: Vec<String>,
    past_names: Vec<String>,
    present_names: Vec<String>,
    /// `[heads, head_dim]` of the self-attention cache.
    cache_dims: [usize; 2],
    max_tokens: usize,
    window_frames: usize,
    mel: kernels::whisper::WhisperLogMel,
    mel_buffer: Vec<f32>,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper")
            .field("layers", &(self.past_names.len() / 2))
            .field("cache_dims", &self.cache_dims)
            .field("vocabulary", &self.vocabulary.len())
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Whisper {
    /// Loads `encoder.onnx`, `decoder.onnx`, `vocabulary.txt` and `config.json` from `dir`
    /// (see [`default_model_dir`]) with the default options.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::load_with(dir, &WhisperOptions::default())
    }

    /// As [`Whisper::load`], with options. Checks the graphs' input and output names and the
    /// vocabulary at once, so a wrong or damaged folder fails here, not mid-stream.
    pub fn load_with(dir: impl AsRef<Path>, options: &WhisperOptions) -> Result<Self, Error> {
        Self::load_files(&WhisperFiles::in_dir(dir), options)
    }

    /// As [`Whisper::load_with`], from four named files (a model package names its own, for
    /// instance the int8 graphs `encoder-int8.onnx` and `decoder-int8.onnx`).
    pub fn load_files(files: &WhisperFiles, options: &WhisperOptions) -> Result<Self, Error> {
        if !(2..=WINDOW_FRAMES).contains(&options.window_frames) {
            return Err(Error::Options(format!(
                "window_frames must be 2..={WINDOW_FRAMES}, got {}",
                options.window_frames
            )));
        }
        let file = |path: &Path| -> Result<PathBuf, Error> {
            if path.is_file() {
                Ok(path.to_owned())
            } else {
                Err(Error::MissingFile {
                    path: path.to_owned(),
                })
            }
        };
        let encoder_path = file(&files.encoder)?;
        let decoder_path = file(&files.decoder)?;
        let vocabulary = Vocabulary::load(&file(&files.vocabulary)?)?;
        let (suppress, suppress_begin) = load_suppression(&file(&files.config)?)?;

        let environment = interaction_runtime::ort_environment()?;
        let open = |path: &Path| -> Result<Session, Error> {
            let model_error = |detail: String| Error::Model {
                path: path.to_owned(),
                detail,
            };
            Session::builder(environment)
                .map_err(|e| model_error(e.to_string()))?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(|e| model_error(e.to_string()))?
                .with_intra_threads(options.threads)
                .map_err(|e| model_error(e.to_string()))?
                // Idle workers sleep instead of spinning: they would take the core that the
                // element's streaming thread (VAD, Smart Turn) needs between two runs.
                .with_config_entry("session.intra_op.allow_spinning", "0")
                .map_err(|e| model_error(e.to_string()))?
                .commit_from_file(path)
                .map_err(|e| model_error(e.to_string()))
        };
        let encoder = open(&encoder_path)?;
        let decoder = open(&decoder_path)?;

        // The layer count follows from the encoder's cross-attention outputs.
        let layers = (0..)
            .take_while(|l| has(encoder.outputs(), &format!("cross_k.{l}")))
            .count();
        if layers == 0 {
            return Err(Error::Model {
                path: encoder_path,
                detail: "no output `cross_k.0`: not an encoder made by models/whisper/convert.py"
                    .into(),
            });
        }
        let per_layer = |prefixes: &[&str]| -> Vec<String> {
            (0..layers)
                .flat_map(|l| prefixes.iter().map(move |p| format!("{p}.{l}")))
                .collect()
        };
        let cross_names = per_layer(&["cross_k", "cross_v"]);
        let past_names = per_layer(&["past_k", "past_v"]);
        let present_names = per_layer(&["present_k", "present_v"]);
        require(
            &encoder_path,
            "input",
            encoder.inputs(),
            &["mel".to_owned()],
        )?;
        require(&encoder_path, "output", encoder.outputs(), &cross_names)?;
        let mut decoder_inputs = vec!["tokens".to_owned()];
        decoder_inputs.extend(past_names.iter().cloned());
        decoder_inputs.extend(cross_names.iter().cloned());
        require(&decoder_path, "input", decoder.inputs(), &decoder_inputs)?;
        let mut decoder_outputs = vec!["logits".to_owned()];
        decoder_outputs.extend(present_names.iter().cloned());
        require(&decoder_path, "output", decoder.outputs(), &decoder_outputs)?;

        // The cache's heads and head size come from the declared shape of `past_k.0`.
        let cache_dims = decoder
            .inputs()
            .iter()
            .find(|i| i.name() == "past_k.0")
            .and_then(|i| i.dtype().tensor_shape())
            .and_then(|shape| match shape.as_ref() {
                &[_, heads, _, head_dim] if heads > 0 && head_dim > 0 => {
                    Some([heads as usize, head_dim as usize])
                }
                _ => None,
            })
            .ok_or_else(|| Error::Model {
                path: decoder_path.clone(),
                detail: "input `past_k.0` must be [batch, heads, past, head_dim] with fixed \
                         heads and head_dim"
                    .into(),
            })?;
        let logits_width = decoder
            .outputs()
            .iter()
            .find(|o| o.name() == "logits")
            .and_then(|o| o.dtype().tensor_shape())
            .and_then(|shape| shape.last().copied());
        if logits_width != Some(vocabulary.len() as i64) {
            return Err(Error::Model {
                path: decoder_path,
                detail: format!(
                    "its logits have {logits_width:?} columns but the vocabulary has {} tokens",
                    vocabulary.len()
                ),
            });
        }

        Ok(Whisper {
            encoder,
            decoder,
            vocabulary,
            suppress,
            suppress_begin,
            cross_names,
            past_names,
            present_names,
            cache_dims,
            max_tokens: options.max_tokens.clamp(1, MAX_POSITIONS - PROMPT.len()),
            window_frames: options.window_frames,
            mel: kernels::whisper::WhisperLogMel::new(),
            mel_buffer: vec![0.0; N_MELS * options.window_frames],
        })
    }

    /// The vocabulary, to turn tokens into text.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// Log-mel frames per window: [`Whisper::transcribe_mel`] takes `80 × window_frames`.
    pub fn window_frames(&self) -> usize {
        self.window_frames
    }

    /// Transcribes 16 kHz mono audio (samples in [-1, 1]). Audio longer than the window (30 s
    /// by default) is cut to its start ([`Transcript::audio_truncated`]); shorter audio is
    /// padded with silence.
    /// NaN or infinite samples are an error.
    pub fn transcribe(&mut self, audio: &[f32]) -> Result<Transcript, Error> {
        let start = Instant::now();
        self.mel
            .compute_into(audio, self.window_frames, &mut self.mel_buffer)
            .map_err(|error| Error::Audio(error.to_string()))?;
        let features = start.elapsed();
        let mel = std::mem::take(&mut self.mel_buffer);
        let result = self.transcribe_mel(&mel);
        self.mel_buffer = mel;
        let mut transcript = result?;
        transcript.audio_truncated = audio.len() > self.window_frames * HOP;
        transcript.timings.features = features;
        Ok(transcript)
    }

    /// Transcribes one log-mel window, row-major `[80][window_frames]` (`[80][3000]` by
    /// default) as the `kernels` crate gives it.
    pub fn transcribe_mel(&mut self, mel: &[f32]) -> Result<Transcript, Error> {
        self.decode_window(mel, true)
    }

    /// As [`Whisper::transcribe_mel`], but without the KV cache: every step feeds the whole
    /// token sequence again. Slow; it is the baseline of the benchmark and the tests' check
    /// that the cache changes nothing.
    pub fn transcribe_mel_without_cache(&mut self, mel: &[f32]) -> Result<Transcript, Error> {
        self.decode_window(mel, false)
    }

    fn decode_window(&mut self, mel: &[f32], use_cache: bool) -> Result<Transcript, Error> {
        if mel.len() != N_MELS * self.window_frames {
            return Err(Error::Audio(format!(
                "a log-mel window has {} values ([80][{}]), got {}",
                N_MELS * self.window_frames,
                self.window_frames,
                mel.len()
            )));
        }
        let inference = |stage: &'static str| {
            move |error: ort::Error| Error::Inference {
                stage,
                detail: error.to_string(),
            }
        };
        let start = Instant::now();
        let cross = {
            let input = TensorRef::from_array_view(([1usize, N_MELS, self.window_frames], mel))
                .map_err(inference("encoder input"))?;
            let mut outputs = self
                .encoder
                .run(ort::inputs!["mel" => input])
                .map_err(inference("encoder"))?;
            self.cross_names
                .iter()
                .map(|name| take_output(&mut outputs, name, "encoder"))
                .collect::<Result<Vec<DynValue>, Error>>()?
        };
        let encoder = start.elapsed();

        let start = Instant::now();
        let [heads, head_dim] = self.cache_dims;
        let mut past = Vec::with_capacity(self.past_names.len());
        for _ in &self.past_names {
            let empty = Tensor::<f32>::from_array(([1usize, heads, 0, head_dim], Vec::new()))
                .map_err(inference("decoder cache"))?;
            past.push(empty.into_dyn());
        }
        let mut feed: Vec<i64> = PROMPT.iter().map(|&t| i64::from(t)).collect();
        let mut tokens: Vec<u32> = Vec::new();
        let mut steps = 0;
        let mut hit_token_limit = true;
        while tokens.len() < self.max_tokens {
            let token_input = TensorRef::from_array_view(([1usize, feed.len()], &feed[..]))
                .map_err(inference("decoder input"))?;
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
                Vec::with_capacity(1 + past.len() + cross.len());
            inputs.push(("tokens".into(), token_input.into()));
            for (name, value) in self.past_names.iter().zip(&past) {
                inputs.push((name.as_str().into(), value.into()));
            }
            for (name, value) in self.cross_names.iter().zip(&cross) {
                inputs.push((name.as_str().into(), value.into()));
            }
            let mut outputs = self.decoder.run(inputs).map_err(inference("decoder"))?;
            steps += 1;
            let next = {
                let (shape, logits) = outputs["logits"]
                    .try_extract_tensor::<f32>()
                    .map_err(inference("decoder logits"))?;
                let width = shape.last().copied().unwrap_or(0) as usize;
                let last_row = logits
                    .len()
                    .checked_sub(width)
                    .and_then(|start| logits.get(start..start + (END_OF_TEXT as usize + 1)))
                    .ok_or_else(|| Error::Inference {
                        stage: "decoder",
                        detail: format!("logits of shape {shape:?} are too narrow"),
                    })?;
                let suppress = if tokens.is_empty() {
                    &self.suppress_begin
                } else {
                    &self.suppress
                };
                greedy(last_row, suppress)
            };
            if next == END_OF_TEXT {
                hit_token_limit = false;
                break;
            }
            tokens.push(next);
            if use_cache {
                past = self
                    .present_names
                    .iter()
                    .map(|name| take_output(&mut outputs, name, "decoder"))
                    .collect::<Result<Vec<DynValue>, Error>>()?;
                feed.clear();
            }
            feed.push(i64::from(next));
        }
        let decoder = start.elapsed();
        Ok(Transcript {
            text: self.vocabulary.decode(&tokens),
            tokens,
            hit_token_limit,
            audio_truncated: false,
            timings: Timings {
                features: Duration::ZERO,
                encoder,
                decoder,
                decoder_steps: steps,
            },
        })
    }
}

/// The highest-scoring allowed token among ids 0..=50256 (text and `<|endoftext|>`); the
/// first index wins ties, as numpy's argmax. NaN scores never win.
fn greedy(scores: &[f32], suppress: &[bool]) -> u32 {
    let mut best = END_OF_TEXT;
    let mut best_score = f32::NEG_INFINITY;
    for (id, (&score, &suppressed)) in scores.iter().zip(suppress).enumerate() {
        if !suppressed && score > best_score {
            best = id as u32;
            best_score = score;
        }
    }
    best
}

fn take_output(
    outputs: &mut ort::session::SessionOutputs<'_>,
    name: &str,
    stage: &'static str,
) -> Result<DynValue, Error> {
    outputs.remove(name).ok_or_else(|| Error::Inference {
        stage,
        detail: format!("no output `{name}`"),
    })
}

fn has(outlets: &[ort::value::Outlet], name: &str) -> bool {
    outlets.iter().any(|o| o.name() == name)
}

fn require(
    path: &Path,
    kind: &str,
    outlets: &[ort::value::Outlet],
    names: &[String],
) -> Result<(), Error> {
    let missing: Vec<&str> = names
        .iter()
        .filter(|name| !has(outlets, name))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let present: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
    Err(Error::Model {
        path: path.to_owned(),
        detail: format!(
            "{kind}s {missing:?} are missing (it has {present:?}); rebuild it with \
             models/whisper/derive.sh"
        ),
    })
}

/// `suppress_ids` and `suppress_ids_begin` from the CTranslate2 `config.json`, as masks over
/// the text tokens and `<|endoftext|>`.
fn load_suppression(path: &Path) -> Result<(Vec<bool>, Vec<bool>), Error> {
    let bad = |detail: String| Error::Config {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let ids = |key: &str| -> Result<Vec<u64>, Error> {
        config
            .get(key)
            .and_then(|v| v.as_array())
            .and_then(|items| {
                items
                    .iter()
                    .map(|v| v.as_u64())
                    .collect::<Option<Vec<u64>>>()
            })
            .ok_or_else(|| bad(format!("`{key}` must be a list of token ids")))
    };
    let width = END_OF_TEXT as usize + 1;
    let mut suppress = vec![false; width];
    for id in ids("suppress_ids")? {
        if let Some(slot) = suppress.get_mut(id as usize) {
            *slot = true;
        }
    }
    let mut suppress_begin = suppress.clone();
    for id in ids("suppress_ids_begin")? {
        if let Some(slot) = suppress_begin.get_mut(id as usize) {
            *slot = true;
        }
    }
    Ok((suppress, suppress_begin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_can_move_to_a_streaming_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Whisper>();
    }

    #[test]
    fn greedy_skips_suppressed_and_nan() {
        let mut scores = vec![0.0f32; END_OF_TEXT as usize + 1];
        let mut suppress = vec![false; scores.len()];
        scores[5] = 3.0;
        scores[7] = 2.0;
        scores[9] = f32::NAN;
        assert_eq!(greedy(&scores, &suppress), 5);
        suppress[5] = true;
        assert_eq!(greedy(&scores, &suppress), 7);
        let all_nan = vec![f32::NAN; scores.len()];
        assert_eq!(greedy(&all_nan, &suppress), END_OF_TEXT);
    }
}
