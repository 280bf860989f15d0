//! duplexbench: measures a full-duplex voice agent at its audio output, with the task
//! definitions of Full-Duplex-Bench v1 (see `README.md` beside this crate).
//!
//! - [`script`] parses the dialogue scripts (`dialogues/*.txt`);
//! - [`generate`] renders a dialogue's user side with a [`voice::UserVoice`] (espeak-ng, as a
//!   separate process) into a 16 kHz WAV and a user-segments JSON ([`segments`]);
//! - [`detect`] finds agent speech in a recorded output, to the sample;
//! - [`score`] computes the metrics, [`plot`] draws the timelines and histograms;
//! - [`check`] compares a user's own segments JSON with its WAV;
//! - [`runner`] is the boundary for the live runner that plays dialogues through a pipeline,
//!   [`live`] the runner itself, [`cues`] how it times interruptions and back-channels on the
//!   agent's live output.

pub mod audio;
pub mod check;
pub mod cues;
pub mod decisions;
pub mod detect;
pub mod generate;
pub mod live;
pub mod piper;
pub mod plot;
pub mod rng;
pub mod runner;
pub mod score;
pub mod script;
pub mod segments;
pub mod voice;
