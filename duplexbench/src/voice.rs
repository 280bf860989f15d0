//! The user's voices: a small trait, and espeak-ng run as a separate program.
//!
//! espeak-ng is GPL-3; it is never linked. It runs as its own process (`espeak-ng --stdout`),
//! the text goes in on its stdin and the WAV comes back on its stdout. A Piper voice (through
//! `ort`) can implement [`UserVoice`] later without touching the generator.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::audio;

/// The sample rate of every rendered user side.
pub const USER_SAMPLE_RATE: u32 = 16_000;

/// Samples whose magnitude is below this (-45 dBFS, the agent-speech detector's default `off`
/// level, so that user and agent boundaries are measured at the same level) at either end of a
/// rendered phrase are cut off: a segment's `start` is the phrase's first sample at or above
/// it and its `end` one past the last. 185 / 32768 is the smallest 16-bit magnitude at or above
/// 10^(-45/20).
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
}

/// A voice for the user's side: text in, 16 kHz mono samples out, trimmed so that the first
/// and last samples reach [`TRIM_THRESHOLD`].
pub trait UserVoice {
    /// Engine name for the JSON (`espeak-ng`).
    fn engine(&self) -> &str;
    /// Engine version for the JSON.
    fn version(&self) -> String;
    fn render(&self, text: &str, params: &VoiceParams) -> Result<Vec<i16>, VoiceError>;
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
    fn run(&self, args: &[&str], stdin_text: Option<&str>) -> Result<Vec<u8>, VoiceError> {
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
    fn engine(&self) -> &str {
        "espeak-ng"
    }

    fn version(&self) -> String {
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
        let resampled = audio::resample(&samples, rate, USER_SAMPLE_RATE);
        let (first, end) = audio::trim_range(&resampled, TRIM_THRESHOLD)
            .ok_or_else(|| VoiceError::Silent(text.to_owned()))?;
        Ok(resampled[first..end].to_vec())
    }
}
