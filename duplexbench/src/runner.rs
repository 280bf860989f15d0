//! The boundary for the live runner ([`crate::live::GstAgent`] implements it).
//!
//! The runner plays each dialogue's user WAV live, at real-time pace, into a pipeline built
//! from a model package and the interaction elements, records the agent's output audio from
//! sample 0 of the user side (same clock, same start), and writes every decision bus message
//! as a JSON line ([`crate::decisions`]). Interruptions and back-channels may be cued on the
//! agent's live output ([`crate::cues`]), so the recording says which user side was really
//! played; [`crate::score`] scores against that.

use std::path::{Path, PathBuf};

use crate::segments::UserSegments;

/// What one live run of a dialogue leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// The agent's output audio, time-aligned with the user WAV (sample 0 = user sample 0).
    pub agent_wav: PathBuf,
    /// Decision bus messages as JSON lines, times from the start of the recording.
    pub decisions: Option<PathBuf>,
    /// The user side as played (the generated one, with cued items moved) and its WAV.
    pub user_wav: PathBuf,
    pub user: UserSegments,
}

/// An agent under test: a configuration (model package, turn detection) that can play a
/// dialogue and record what came out.
pub trait AgentUnderTest {
    /// The label in the results table (`default`, `silence-500ms`, ...).
    fn label(&self) -> &str;

    /// Plays `user_wav` live and records the agent's output into `out_dir`.
    fn run(
        &mut self,
        user_wav: &Path,
        segments: &UserSegments,
        out_dir: &Path,
    ) -> Result<Recording, Box<dyn std::error::Error + Send + Sync>>;
}
