//! The user-side generator: a dialogue script and a seed in, a 16 kHz mono WAV and its
//! user-segments JSON out.
//!
//! Every draw (voice, rate, pitch, silence and pause lengths, onsets) comes from one
//! [`SplitMix64`] stream per dialogue, keyed by the seed and the dialogue id, in script order.
//! Phrases are rendered one by one and trimmed (see [`crate::voice::TRIM_THRESHOLD`]), then
//! placed into digital silence at sample positions the generator chose, so the segment times in
//! the JSON are exact to the sample: every sample outside a segment is zero, and the first and
//! last sample of each segment reach the trim threshold.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audio;
use crate::rng::SplitMix64;
use crate::script::{Dialogue, Range, Step};
use crate::segments::{self, Item, Segment, Task, UserSegments, VoiceInfo};
use crate::voice::{USER_SAMPLE_RATE, UserVoice, VoiceError, VoiceParams};

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("dialogue `{dialogue}`: {source}")]
    Voice {
        dialogue: String,
        source: VoiceError,
    },
    #[error("dialogue `{dialogue}`: {message}")]
    Script { dialogue: String, message: String },
    #[error("{path}: {message}")]
    Write { path: String, message: String },
}

/// A rendered dialogue.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub samples: Vec<i16>,
    pub segments: UserSegments,
}

fn to_samples(seconds: f64) -> u64 {
    (seconds * f64::from(USER_SAMPLE_RATE)).round() as u64
}

fn draw(rng: &mut SplitMix64, range: Range) -> f64 {
    rng.uniform(range.low, range.high)
}

/// Renders one dialogue's user side.
pub fn render_dialogue(
    dialogue: &Dialogue,
    seed: u64,
    voice: &dyn UserVoice,
) -> Result<Rendered, GenerateError> {
    let script_error = |message: String| GenerateError::Script {
        dialogue: dialogue.id.clone(),
        message,
    };
    if dialogue.voices.is_empty() {
        return Err(script_error("no voice to choose from".into()));
    }
    let mut rng = SplitMix64::for_stream(seed, &dialogue.id);
    let params = VoiceParams {
        name: dialogue.voices[rng.index(dialogue.voices.len())].clone(),
        rate: draw(&mut rng, dialogue.rate).round() as u32,
        pitch: draw(&mut rng, dialogue.pitch).round() as u32,
    };

    let mut audio: Vec<i16> = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    // Where the next sound may go (the end of everything placed so far, silence included).
    let mut cursor: u64 = 0;
    let mut last_user_offset: u64 = 0;
    // Onset of the user turn in progress (a run of say/pause/ask without silence).
    let mut turn_start: Option<u64> = None;
    // The agent's expected onset, until the first user event placed after it.
    let mut anchor: Option<u64> = None;

    let place = |text: &str,
                 spoken: &str,
                 start: u64,
                 audio: &mut Vec<i16>,
                 segments: &mut Vec<Segment>|
     -> Result<u64, GenerateError> {
        let phrase = voice
            .render(spoken, &params)
            .map_err(|source| GenerateError::Voice {
                dialogue: dialogue.id.clone(),
                source,
            })?;
        audio.resize(start as usize, 0);
        audio.extend_from_slice(&phrase);
        let end = start + phrase.len() as u64;
        segments.push(Segment {
            start,
            end,
            text: text.to_owned(),
        });
        Ok(end)
    };

    for step in &dialogue.steps {
        match step {
            Step::Silence(range) => {
                cursor += to_samples(draw(&mut rng, *range));
                turn_start = None;
            }
            Step::Pause(range) => {
                let length = to_samples(draw(&mut rng, *range));
                if turn_start.is_none() {
                    return Err(script_error("`pause` must follow user speech".into()));
                }
                items.push(Item {
                    task: Task::Pause,
                    start: cursor,
                    end: cursor + length,
                    window_end: None,
                    expected_agent_onset: None,
                    text: String::new(),
                });
                cursor += length;
            }
            Step::Say(speech) | Step::Ask(speech) => {
                let start = cursor;
                let end = place(
                    &speech.text,
                    &speech.spoken,
                    start,
                    &mut audio,
                    &mut segments,
                )?;
                let onset = *turn_start.get_or_insert(start);
                if matches!(step, Step::Ask(_)) {
                    items.push(Item {
                        task: Task::TurnTaking,
                        start: onset,
                        end,
                        window_end: None,
                        expected_agent_onset: None,
                        text: speech.text.clone(),
                    });
                }
                cursor = end;
                last_user_offset = end;
                anchor = None;
            }
            Step::Expect(range) => {
                anchor = Some(last_user_offset + to_samples(draw(&mut rng, *range)));
                turn_start = None;
            }
            Step::Interrupt(range, speech) | Step::Backchannel(range, speech) => {
                let delay = to_samples(draw(&mut rng, *range));
                let expected = anchor;
                let start = match anchor.take() {
                    Some(expected_onset) => expected_onset + delay,
                    None => last_user_offset + delay,
                };
                if start < cursor {
                    return Err(script_error(format!(
                        "`{}` would start at {:.3} s, before the end of earlier audio at {:.3} s",
                        speech.text,
                        start as f64 / f64::from(USER_SAMPLE_RATE),
                        cursor as f64 / f64::from(USER_SAMPLE_RATE)
                    )));
                }
                let end = place(
                    &speech.text,
                    &speech.spoken,
                    start,
                    &mut audio,
                    &mut segments,
                )?;
                items.push(Item {
                    task: if matches!(step, Step::Interrupt(..)) {
                        Task::Interruption
                    } else {
                        Task::Backchannel
                    },
                    start,
                    end,
                    window_end: None,
                    expected_agent_onset: expected,
                    text: speech.text.clone(),
                });
                cursor = end;
                last_user_offset = end;
                turn_start = None;
            }
        }
    }
    audio.resize(cursor.max(audio.len() as u64) as usize, 0);

    let mut user = UserSegments {
        schema: segments::SCHEMA.to_owned(),
        dialogue: dialogue.id.clone(),
        sample_rate: USER_SAMPLE_RATE,
        num_samples: audio.len() as u64,
        seed: Some(seed),
        voice: Some(VoiceInfo {
            engine: voice.engine(&params.name),
            name: params.name.clone(),
            rate: Some(params.rate),
            pitch: voice.uses_pitch(&params.name).then_some(params.pitch),
            engine_version: voice.version(&params.name),
        }),
        segments,
        items,
    };
    // Write the derived windows out, so that the JSON says exactly what is scored.
    let windows: Vec<u64> = user
        .items
        .iter()
        .map(|item| user.effective_window_end(item))
        .collect();
    for (item, window_end) in user.items.iter_mut().zip(windows) {
        item.window_end = Some(window_end);
    }
    user.validate().map_err(script_error)?;
    Ok(Rendered {
        samples: audio,
        segments: user,
    })
}

/// `manifest.json` of a generated set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub seed: u64,
    pub dialogues: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub id: String,
    pub task: String,
    /// File names relative to the manifest.
    pub wav: String,
    pub segments: String,
}

pub const MANIFEST_SCHEMA: &str = "duplexbench.generated/1";

/// Renders every dialogue into `out_dir`: `<id>.wav`, `<id>.json` and `manifest.json`.
pub fn generate_set(
    dialogues: &[Dialogue],
    seed: u64,
    voice: &dyn UserVoice,
    out_dir: &Path,
) -> Result<Manifest, GenerateError> {
    let write_error = |path: &Path, message: String| GenerateError::Write {
        path: path.display().to_string(),
        message,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| write_error(out_dir, e.to_string()))?;
    let mut entries = Vec::new();
    for dialogue in dialogues {
        let rendered = render_dialogue(dialogue, seed, voice)?;
        let wav_name = format!("{}.wav", dialogue.id);
        let json_name = format!("{}.json", dialogue.id);
        let wav_path = out_dir.join(&wav_name);
        audio::write_wav_i16(&wav_path, &rendered.samples, USER_SAMPLE_RATE)
            .map_err(|e| write_error(&wav_path, e.to_string()))?;
        write_json(&out_dir.join(&json_name), &rendered.segments)?;
        entries.push(ManifestEntry {
            id: dialogue.id.clone(),
            task: dialogue.task.clone(),
            wav: wav_name,
            segments: json_name,
        });
    }
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.to_owned(),
        seed,
        dialogues: entries,
    };
    write_json(&out_dir.join("manifest.json"), &manifest)?;
    Ok(manifest)
}

/// Writes pretty JSON with a final newline.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), GenerateError> {
    let write_error = |message: String| GenerateError::Write {
        path: path.display().to_string(),
        message,
    };
    let mut text = serde_json::to_string_pretty(value).map_err(|e| write_error(e.to_string()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| write_error(e.to_string()))
}

/// The paths of a generated set, for the runner and the tests.
pub fn manifest_paths(dir: &Path, manifest: &Manifest) -> Vec<(PathBuf, PathBuf)> {
    manifest
        .dialogues
        .iter()
        .map(|entry| (dir.join(&entry.wav), dir.join(&entry.segments)))
        .collect()
}
