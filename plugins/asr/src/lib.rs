//! Speech recognition for gst-interaction.
//!
//! - [`Whisper`]: Whisper tiny.en through ONNX Runtime. The ONNX graphs are converted from the
//!   shipped CTranslate2 weights by `models/whisper/derive.sh` (run by `scripts/setup.sh`)
//!   into `<cache>/derived/whisper-tiny-en/` ([`default_model_dir`]). The decoder keeps a
//!   self-attention KV cache, so each generated token costs one small decoder step; decoding
//!   is greedy, without timestamps, bounded by [`WhisperOptions::max_tokens`].
//! - [`wer`]: word error rate on normalised words, for tests that transcribe speech back.
//!
//! The features are Whisper's log-mel from the `kernels` crate; the recipe and the decoding
//! rules are the same as `models/whisper/transcribe.py`, the Python reference, and the tests
//! check that both give the same tokens on the same audio.

pub mod vocab;
pub mod wer;
mod whisper;

use std::path::PathBuf;

pub use vocab::Vocabulary;
pub use wer::{WordErrors, word_error_rate, word_errors};
pub use whisper::{
    HOP, MAX_POSITIONS, N_MELS, PROMPT, SAMPLE_RATE, Timings, Transcript, WINDOW_FRAMES,
    WINDOW_SAMPLES, Whisper, WhisperFiles, WhisperOptions, default_model_dir,
};

/// Everything that can go wrong, with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Whisper model file {path} is missing; run `scripts/setup.sh` (or `make test`) to \
         fetch and convert the models, or point the model directory at a folder made by \
         models/whisper/derive.sh"
    )]
    MissingFile { path: PathBuf },
    #[error("could not load the Whisper model {path}: {detail}")]
    Model { path: PathBuf, detail: String },
    #[error("Whisper vocabulary {path} is not usable: {detail}")]
    Vocabulary { path: PathBuf, detail: String },
    #[error("Whisper config {path} is not usable: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error(transparent)]
    Runtime(#[from] interaction_runtime::Error),
    #[error("Whisper options are not valid: {0}")]
    Options(String),
    #[error("Whisper input audio is not usable: {0}")]
    Audio(String),
    #[error("Whisper {stage} failed: {detail}")]
    Inference { stage: &'static str, detail: String },
}
