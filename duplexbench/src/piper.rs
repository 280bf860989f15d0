//! A Piper VITS voice for the user's side, through `ort` (the model from the model cache).
//!
//! Phonemes come from espeak-ng run as a separate process (`espeak-ng -q --ipa`), clause by
//! clause, with the clause's punctuation put back after it (espeak-ng drops it), as Piper
//! expects; each IPA code point maps to ids through the voice's `phoneme_id_map`, as
//! `^ _ p1 _ p2 _ ... $` (begin, pad after every symbol, end).
//!
//! Reproducible: the graph's noise scales are set to 0 (the model then renders the mean of its
//! distribution, with no random draw) and the session runs on one thread, so the same text and
//! rate give the same samples on every run. The speaking rate maps to the length scale
//! (`170 / rate`: 170 words per minute is the voice's natural pace); Piper has no pitch control.

use std::collections::HashMap;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;

use crate::voice::{EspeakNg, VoiceError, finish_phrase};

/// A loaded Piper voice.
pub struct Piper {
    model_name: String,
    session: Mutex<Session>,
    phoneme_ids: HashMap<char, Vec<i64>>,
    sample_rate: u32,
    espeak_voice: String,
    piper_version: String,
    espeak: EspeakNg,
}

fn piper_error(message: impl std::fmt::Display) -> VoiceError {
    VoiceError::Piper(message.to_string())
}

const CLAUSE_PUNCTUATION: &[char] = &['.', ',', '!', '?', ';', ':'];

impl Piper {
    /// Loads `piper/<model_name>.onnx` and its `.onnx.json` from the model cache.
    pub fn load(model_name: &str, espeak: EspeakNg) -> Result<Self, VoiceError> {
        if !model_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(piper_error(format!("bad model name `{model_name}`")));
        }
        let model = interaction_runtime::model_file(format!("piper/{model_name}.onnx"))
            .map_err(piper_error)?;
        let config_path = model.with_extension("onnx.json");
        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| piper_error(format!("{}: {e}", config_path.display())))?;
        let config: serde_json::Value = serde_json::from_str(&config_text)
            .map_err(|e| piper_error(format!("{}: {e}", config_path.display())))?;
        let missing = |what: &str| piper_error(format!("{}: no {what}", config_path.display()));
        let sample_rate = config["audio"]["sample_rate"]
            .as_u64()
            .filter(|&r| r > 0 && r <= 192_000)
            .ok_or_else(|| missing("audio.sample_rate"))? as u32;
        let espeak_voice = config["espeak"]["voice"]
            .as_str()
            .ok_or_else(|| missing("espeak.voice"))?
            .to_owned();
        let map = config["phoneme_id_map"]
            .as_object()
            .ok_or_else(|| missing("phoneme_id_map"))?;
        let mut phoneme_ids = HashMap::new();
        for (symbol, ids) in map {
            let mut chars = symbol.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                continue;
            };
            let ids: Vec<i64> = ids
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default();
            phoneme_ids.insert(c, ids);
        }
        for required in ['^', '_', '$'] {
            if !phoneme_ids.contains_key(&required) {
                return Err(missing(&format!("`{required}` in phoneme_id_map")));
            }
        }
        let piper_version = config["piper_version"].as_str().unwrap_or("").to_owned();

        let environment = interaction_runtime::ort_environment().map_err(piper_error)?;
        let session = Session::builder(environment)
            .and_then(|builder| Ok(builder.with_intra_threads(1)?))
            .and_then(|mut builder| builder.commit_from_file(&model))
            .map_err(|e| piper_error(format!("cannot load {}: {e}", model.display())))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for name in ["input", "input_lengths", "scales"] {
            if !inputs.contains(&name) {
                return Err(piper_error(format!(
                    "{} has no input `{name}` (inputs: {inputs:?})",
                    model.display()
                )));
            }
        }
        if !session.outputs().iter().any(|o| o.name() == "output") {
            return Err(piper_error(format!(
                "{} has no output `output`",
                model.display()
            )));
        }
        Ok(Self {
            model_name: model_name.to_owned(),
            session: Mutex::new(session),
            phoneme_ids,
            sample_rate,
            espeak_voice,
            piper_version,
            espeak,
        })
    }

    pub fn version(&self) -> String {
        format!("piper {} ({})", self.piper_version, self.model_name)
    }

    /// IPA phonemes of `text`, clause by clause, with the clause punctuation kept.
    pub fn phonemize(&self, text: &str) -> Result<String, VoiceError> {
        let mut clauses: Vec<(String, Option<char>)> = Vec::new();
        let mut current = String::new();
        for c in text.chars() {
            if CLAUSE_PUNCTUATION.contains(&c) {
                clauses.push((std::mem::take(&mut current), Some(c)));
            } else {
                current.push(c);
            }
        }
        clauses.push((current, None));
        let mut phonemes = String::new();
        for (clause, punctuation) in clauses {
            if !clause.trim().is_empty() {
                let out = self.espeak.run(
                    &["-q", "--ipa", "-v", &self.espeak_voice],
                    Some(clause.trim()),
                )?;
                let ipa = String::from_utf8_lossy(&out);
                let ipa = ipa.split_whitespace().collect::<Vec<_>>().join(" ");
                if !phonemes.is_empty() && !phonemes.ends_with(' ') {
                    phonemes.push(' ');
                }
                phonemes.push_str(&ipa);
            }
            if let Some(p) = punctuation
                && !phonemes.is_empty()
            {
                phonemes.push(p);
                phonemes.push(' ');
            }
        }
        Ok(phonemes.trim_end().to_owned())
    }

    /// The id sequence Piper expects: `^ _ p1 _ p2 _ ... $`. Symbols outside the map are
    /// skipped.
    pub fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let id = |c: char| self.phoneme_ids.get(&c).cloned().unwrap_or_default();
        let pad = id('_');
        let mut ids = id('^');
        ids.extend(&pad);
        for c in phonemes.chars() {
            if let Some(symbol) = self.phoneme_ids.get(&c) {
                ids.extend(symbol);
                ids.extend(&pad);
            }
        }
        ids.extend(id('$'));
        ids
    }

    /// Renders `text` at `rate` words per minute; 16 kHz, trimmed.
    pub fn render(&self, text: &str, rate: u32) -> Result<Vec<i16>, VoiceError> {
        let phonemes = self.phonemize(text)?;
        let ids = self.phoneme_ids(&phonemes);
        if ids.len() <= 3 {
            return Err(VoiceError::Silent(text.to_owned()));
        }
        let length_scale = (170.0 / f64::from(rate.max(1))).clamp(0.3, 3.0) as f32;
        let count = ids.len();
        let input = Tensor::<i64>::from_array(([1usize, count], ids)).map_err(piper_error)?;
        let lengths =
            Tensor::<i64>::from_array(([1usize], vec![count as i64])).map_err(piper_error)?;
        // noise scale, length scale, noise width: no random draw (see the module doc).
        let scales = Tensor::<f32>::from_array(([3usize], vec![0.0, length_scale, 0.0]))
            .map_err(piper_error)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| piper_error("session lock poisoned"))?;
        let outputs = session
            .run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
            .map_err(piper_error)?;
        let (_, audio) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(piper_error)?;
        // Peak-normalise to -2 dBFS, as Piper normalises its output.
        let peak = audio.iter().fold(0.0f32, |m, s| m.max(s.abs())).max(0.01);
        let gain = 0.8 * 32767.0 / peak;
        let samples: Vec<i16> = audio
            .iter()
            .map(|s| (s * gain).round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        drop(outputs);
        drop(session);
        finish_phrase(&samples, self.sample_rate, text)
    }
}
