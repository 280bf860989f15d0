//! The user-segments JSON: the user's speech and the scored items of one dialogue.
//!
//! Schema `duplexbench.user-segments/1` (documented for users in `duplexbench/README.md`). All
//! times are sample indices at `sample_rate` from the first sample of the user WAV; `end` is
//! exclusive (the first sample after the speech).

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "duplexbench.user-segments/1";

/// The four Full-Duplex-Bench v1 tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A complete user turn: the agent should answer.
    TurnTaking,
    /// A mid-sentence pause: the agent should not take the turn.
    Pause,
    /// The user interrupts the agent: the agent should stop, then answer.
    Interruption,
    /// The user back-channels while the agent talks: the agent should keep talking.
    Backchannel,
}

impl Task {
    pub const ALL: [Task; 4] = [
        Task::TurnTaking,
        Task::Pause,
        Task::Interruption,
        Task::Backchannel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::TurnTaking => "turn-taking",
            Task::Pause => "pause",
            Task::Interruption => "interruption",
            Task::Backchannel => "backchannel",
        }
    }
}

/// One stretch of user speech.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    #[serde(default)]
    pub text: String,
}

/// One scored item.
///
/// - `turn-taking`: `start`/`end` are the user turn's onset and offset;
/// - `pause`: `start`/`end` are the pause (the silence between two parts of one sentence);
/// - `interruption`, `backchannel`: `start`/`end` are the user's onset and offset.
///
/// `window_end` bounds the agent behaviour credited to this item; when absent the scorer
/// derives it (see [`UserSegments::effective_window_end`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub task: Task,
    pub start: u64,
    pub end: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<u64>,
    /// For interruptions and back-channels: where the script expected the agent to start
    /// speaking (informational; the scorer looks at the agent's actual audio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_agent_onset: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// The voice that rendered the user side (informational).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceInfo {
    pub engine: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine_version: String,
}

/// A whole dialogue's user side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSegments {
    pub schema: String,
    pub dialogue: String,
    pub sample_rate: u32,
    /// Length of the user WAV in samples.
    pub num_samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceInfo>,
    pub segments: Vec<Segment>,
    pub items: Vec<Item>,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a user-segments JSON: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl UserSegments {
    pub fn load(path: &std::path::Path) -> Result<Self, SegmentsError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SegmentsError::Read {
            path: name.clone(),
            source,
        })?;
        let parsed: Self = serde_json::from_str(&text).map_err(|source| SegmentsError::Parse {
            path: name.clone(),
            source,
        })?;
        parsed
            .validate()
            .map_err(|message| SegmentsError::Invalid {
                path: name,
                message,
            })?;
        Ok(parsed)
    }

    /// Checks what the scorer relies on; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!(
                "schema is `{}`, this tool reads `{SCHEMA}`",
                self.schema
            ));
        }
        if self.sample_rate == 0 {
            return Err("sample_rate must be > 0".into());
        }
        let mut previous_end = 0;
        for (index, segment) in self.segments.iter().enumerate() {
            if segment.end <= segment.start {
                return Err(format!("segments[{index}]: end must be after start"));
            }
            if segment.start < previous_end {
                return Err(format!(
                    "segments[{index}]: segments must be sorted and must not overlap"
                ));
            }
            if segment.end > self.num_samples {
                return Err(format!("segments[{index}]: ends after num_samples"));
            }
            previous_end = segment.end;
        }
        for (index, item) in self.items.iter().enumerate() {
            if item.end < item.start {
                return Err(format!("items[{index}]: end is before start"));
            }
            if item.end > self.num_samples {
                return Err(format!("items[{index}]: ends after num_samples"));
            }
            if let Some(window_end) = item.window_end
                && window_end < item.end
            {
                return Err(format!("items[{index}]: window_end is before end"));
            }
        }
        Ok(())
    }

    pub fn seconds(&self, sample: u64) -> f64 {
        sample as f64 / f64::from(self.sample_rate)
    }

    /// The end of the window of agent behaviour credited to an item, when the JSON gives none:
    /// - `pause`: the end of the user segment that resumes the sentence (an agent that starts
    ///   because of the pause is credited even if its audio begins after the user resumed);
    /// - the others: the next user segment's onset after the item's end, or the end of the file.
    pub fn effective_window_end(&self, item: &Item) -> u64 {
        if let Some(window_end) = item.window_end {
            return window_end;
        }
        match item.task {
            Task::Pause => self
                .segments
                .iter()
                .find(|s| s.start >= item.end)
                .map_or(self.num_samples, |s| s.end),
            _ => self
                .segments
                .iter()
                .find(|s| s.start >= item.end)
                .map_or(self.num_samples, |s| s.start),
        }
    }
}
