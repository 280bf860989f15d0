//! Decision bus messages, recorded as JSON lines.
//!
//! One JSON object per line: `{"kind": "agent-started", "time_s": 3.52, ...}`. `kind` is the
//! decision's name (the bus message structure name of the interaction elements, e.g.
//! `user-turn-ended`, `agent-started`, `barge-in`, `agent-yielded`, `backchannel`); the time is
//! either `time_s` (seconds) or `running_time_ns` (nanoseconds), measured from the first sample
//! of the agent recording. Other fields are kept for the results JSON but not interpreted.
//! Decisions are drawn on the timelines and counted; the metrics never use them (the metrics
//! come from the audio).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub kind: String,
    pub time_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Parses decision JSON lines; blank lines are skipped.
pub fn parse_decisions(name: &str, text: &str) -> Result<Vec<Decision>, DecisionsError> {
    let mut decisions = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_error = |message: String| DecisionsError::Line {
            path: name.to_owned(),
            line: index + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| line_error(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| line_error("not a JSON object".into()))?;
        let kind = object
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| line_error("no string field `kind`".into()))?;
        let time_s = match (object.get("time_s"), object.get("running_time_ns")) {
            (Some(seconds), _) => seconds
                .as_f64()
                .ok_or_else(|| line_error("`time_s` is not a number".into()))?,
            (None, Some(nanoseconds)) => {
                nanoseconds
                    .as_u64()
                    .ok_or_else(|| line_error("`running_time_ns` is not an integer >= 0".into()))?
                    as f64
                    / 1e9
            }
            (None, None) => {
                return Err(line_error(
                    "needs `time_s` (seconds) or `running_time_ns`".into(),
                ));
            }
        };
        if !time_s.is_finite() || time_s < 0.0 {
            return Err(line_error(format!("time {time_s} is not >= 0")));
        }
        decisions.push(Decision {
            kind: kind.to_owned(),
            time_s,
        });
    }
    Ok(decisions)
}

pub fn load_decisions(path: &Path) -> Result<Vec<Decision>, DecisionsError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DecisionsError::Read {
        path: name.clone(),
        source,
    })?;
    parse_decisions(&name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_time_forms_are_read() {
        let text = "{\"kind\":\"agent-started\",\"time_s\":1.25,\"utterance\":3}\n\n\
                    {\"kind\":\"barge-in\",\"running_time_ns\":2500000000}\n";
        let decisions = parse_decisions("d.jsonl", text).unwrap();
        assert_eq!(
            decisions,
            vec![
                Decision {
                    kind: "agent-started".into(),
                    time_s: 1.25
                },
                Decision {
                    kind: "barge-in".into(),
                    time_s: 2.5
                }
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        for (text, needle) in [
            ("{\"kind\":\"x\",\"time_s\":1}\nnot json\n", "not JSON"),
            (
                "{\"kind\":\"x\",\"time_s\":1}\n[1,2]\n",
                "not a JSON object",
            ),
            ("{\"kind\":\"x\",\"time_s\":1}\n{\"time_s\":1}\n", "`kind`"),
            (
                "{\"kind\":\"x\",\"time_s\":1}\n{\"kind\":\"x\"}\n",
                "needs `time_s`",
            ),
            (
                "{\"kind\":\"x\",\"time_s\":1}\n{\"kind\":\"x\",\"time_s\":-1}\n",
                ">= 0",
            ),
        ] {
            let err = parse_decisions("d.jsonl", text).unwrap_err().to_string();
            assert!(err.starts_with("d.jsonl:2: "), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }
}
