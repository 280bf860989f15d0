//! The user's voices: a small trait, espeak-ng run as a separate program, and [`Voices`], which
//! picks espeak-ng or a Piper voice ([`crate::piper`]) by name.
//!
//! espeak-ng is GPL-3; it is never linked. It runs as its own process (`espeak-ng --stdout`),
//! the text goes in on its stdin and the WAV comes back on its stdout.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::audio;

/// The sample rate of every rendered user side.
pub const USER_SAMPLE_RATE: u32 = 16_000;

/// The agent-speech detector's default `off` level (-45 dBFS) as a 16-bit magnitude: 185 / 32768
/// is the smallest at or above 10^(-45/20). The first and last sample of every rendered phrase
/// reach it (see [`finish_phrase`]).
pub const TRIM_THRESHOLD: i16 = 185;

/// What a voice is asked to render with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceParams {
    /// Voice name, e.g. `en-us` or `en-gb+f3` (espeak-ng voice + variant).
    pub name: String,
    /// Words per minute.
    pub rate: u32,
    /// Pitch, 0..99.
    pub pitch: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error(
        "cannot run `{program}`: {source} (install the Debian package espeak-ng; scripts/setup.sh does)"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{0}")]
    Audio(#[from] audio::AudioError),
    #[error("the voice rendered only silence for {0:?}")]
    Silent(String),
    #[error("Piper voice: {0}")]
    Piper(String),
}

/// A voice for the user's side: text in, 16 kHz mono samples out, trimmed so that the first
/// and last samples reach [`TRIM_THRESHOLD`].
pub trait UserVoice {
    /// Engine name for the JSON (`espeak-ng`, `piper`) of the voice called `voice_name`.
    fn engine(&self, voice_name: &str) -> String;
    /// Engine version for the JSON.
    fn version(&self, voice_name: &str) -> String;
    /// Whether the pitch parameter changes anything (for the JSON).
    fn uses_pitch(&self, voice_name: &str) -> bool;
    fn render(&self, text: &str, params: &VoiceParams) -> Result<Vec<i16>, VoiceError>;
}

/// Resamples rendered speech to [`USER_SAMPLE_RATE`] and trims it to the speech that the
/// scorer's detector (default settings) finds in it: from its first onset to its last offset.
/// So a segment's boundaries are, by construction, where the scorer would put them, its first
/// and last samples reach [`TRIM_THRESHOLD`], and a voice's faint trailing noise (Piper's, a
/// breath) is not counted as speech on the user's side when it would not be on the agent's.
pub fn finish_phrase(samples: &[i16], rate: u32, text: &str) -> Result<Vec<i16>, VoiceError> {
    let resampled = audio::resample(samples, rate, USER_SAMPLE_RATE);
    let as_float: Vec<f32> = resampled.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let found = crate::detect::detect_speech(
        &as_float,
        USER_SAMPLE_RATE,
        &crate::detect::DetectorConfig::default(),
    );
    let (Some(first), Some(last)) = (found.first(), found.last()) else {
        return Err(VoiceError::Silent(text.to_owned()));
    };
    Ok(resampled[first.start as usize..last.end as usize].to_vec())
}

/// espeak-ng as a separate process.
#[derive(Debug, Clone)]
pub struct EspeakNg {
    program: String,
}

impl Default for EspeakNg {
    fn default() -> Self {
        Self {
            program: std::env::var("DUPLEXBENCH_ESPEAK").unwrap_or_else(|_| "espeak-ng".into()),
        }
    }
}

impl EspeakNg {
    /// Runs espeak-ng with `args`, `stdin_text` on its stdin; returns its stdout.
    pub(crate) fn run(
        &self,
        args: &[&str],
        stdin_text: Option<&str>,
    ) -> Result<Vec<u8>, VoiceError> {
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| VoiceError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means espeak-ng exited early; its status and stderr say why.
            let _ = stdin.write_all(stdin_text.unwrap_or("").as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|source| VoiceError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        // espeak-ng exits 0 even for an unknown voice, with a message on stderr.
        if !output.status.success() || stderr.contains("Error") {
            return Err(VoiceError::Failed {
                program: self.program.clone(),
                status: output.status.to_string(),
                stderr,
            });
        }
        Ok(output.stdout)
    }
}

impl UserVoice for EspeakNg {
    fn engine(&self, _voice_name: &str) -> String {
        "espeak-ng".into()
    }

    fn uses_pitch(&self, _voice_name: &str) -> bool {
        true
    }

    fn version(&self, _voice_name: &str) -> String {
        self.run(&["--version"], None)
            .map(|out| {
                // "eSpeak NG text-to-speech: 1.51  Data at: /usr/..." -> without the data path.
                let text = String::from_utf8_lossy(&out);
                let text = text.split("  Data at:").next().unwrap_or("");
                text.trim().to_owned()
            })
            .unwrap_or_default()
    }

    fn render(&self, text: &str, params: &VoiceParams) -> Result<Vec<i16>, VoiceError> {
        let rate = params.rate.to_string();
        let pitch = params.pitch.to_string();
        let bytes = self.run(
            &["-v", &params.name, "-s", &rate, "-p", &pitch, "--stdout"],
            Some(text),
        )?;
        let (samples, rate) = audio::parse_streamed_wav(&bytes)?;
        finish_phrase(&samples, rate, text)
    }
}

/// The prefix of Piper voice names in scripts: `piper:en_US-joe-medium` is the model
/// `piper/en_US-joe-medium.onnx` of the model cache.
pub const PIPER_PREFIX: &str = "piper:";

/// espeak-ng voices, and Piper voices named `piper:<model>` (loaded on first use).
#[derive(Default)]
pub struct Voices {
    espeak: EspeakNg,
    piper: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<crate::piper::Piper>>>,
}

impl Voices {
    fn piper(&self, model: &str) -> Result<std::sync::Arc<crate::piper::Piper>, VoiceError> {
        let mut loaded = self
            .piper
            .lock()
            .map_err(|_| VoiceError::Piper("voice cache poisoned".into()))?;
        if let Some(voice) = loaded.get(model) {
            return Ok(voice.clone());
        }
        let voice = std::sync::Arc::new(crate::piper::Piper::load(model, self.espeak.clone())?);
        loaded.insert(model.to_owned(), voice.clone());
        Ok(voice)
    }
}

impl UserVoice for Voices {
    fn engine(&self, voice_name: &str) -> String {
        if voice_name.starts_with(PIPER_PREFIX) {
            "piper".into()
        } else {
            self.espeak.engine(voice_name)
        }
    }

    fn version(&self, voice_name: &str) -> String {
        match voice_name.strip_prefix(PIPER_PREFIX) {
            Some(model) => self.piper(model).map(|p| p.version()).unwrap_or_default(),
            None => self.espeak.version(voice_name),
        }
    }

    fn uses_pitch(&self, voice_name: &str) -> bool {
        !voice_name.starts_with(PIPER_PREFIX)
    }

    fn render(&self, text: &str, params: &VoiceParams) -> Result<Vec<i16>, VoiceError> {
        match params.name.strip_prefix(PIPER_PREFIX) {
            Some(model) => self.piper(model)?.render(text, params.rate),
            None => self.espeak.render(text, params),
        }
    }
}
