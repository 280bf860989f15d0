//! Dialogue scripts: the text files in `duplexbench/dialogues/`.
//!
//! A script file holds defaults followed by dialogues. Lines are `keyword arguments`; `#` starts
//! a comment; blank lines are ignored. The language (described in full in
//! `duplexbench/README.md`):
//!
//! ```text
//! voice en-us en-gb+f3        # espeak-ng voices: one is drawn per dialogue
//! rate 150..190               # espeak-ng words per minute, drawn per dialogue
//! pitch 35..65                # espeak-ng pitch 0..99, drawn per dialogue
//!
//! dialogue turn-01
//! silence 0.5
//! ask What time does the museum open on Sundays?   # a complete turn: a turn-taking item
//! silence 3.5..4.5
//! say I was thinking about going to                 # speech that is not a complete turn
//! pause 0.5..1.5                                   # a mid-sentence pause: a pause item
//! say the coast this weekend.
//! expect 0.6                 # the agent is expected to start speaking 0.6 s after the user stopped
//! interrupt 1.5..2.5 | Sorry, wait, how tall is it?  # onset: 1.5..2.5 s into the agent's speech
//! backchannel 1.0..2.0 | mm-hm                     # same, labelled as a back-channel
//! ```
//!
//! Ranges `a..b` are drawn uniformly from the seed; a single number is a fixed value.

use std::fmt;

/// A closed range of seconds (or of any number) drawn uniformly per run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub low: f64,
    pub high: f64,
}

impl Range {
    pub fn fixed(value: f64) -> Self {
        Self {
            low: value,
            high: value,
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let parse_number = |s: &str| -> Result<f64, String> {
            let value: f64 = s
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a number"))?;
            if !value.is_finite() || value < 0.0 {
                return Err(format!("`{s}` must be a finite number >= 0"));
            }
            Ok(value)
        };
        match text.split_once("..") {
            Some((low, high)) => {
                let (low, high) = (parse_number(low)?, parse_number(high)?);
                if high < low {
                    return Err(format!(
                        "range `{text}` has its upper bound below its lower"
                    ));
                }
                Ok(Self { low, high })
            }
            None => Ok(Self::fixed(parse_number(text)?)),
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}..{}", self.low, self.high)
        }
    }
}

/// Something the user says: the words (for the JSON and the pictures) and what the voice is
/// given, which differs only where a spelling would be misread (espeak-ng reads "mm-hm" as
/// letters, so the scripts give it as espeak-ng phonemes, `[[m@m'hm]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    pub text: String,
    pub spoken: String,
}

impl Speech {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            spoken: text.to_owned(),
        }
    }

    /// `text` or `text | what the voice says`.
    fn parse(field: &str) -> Result<Self, String> {
        let (text, spoken) = match field.split_once('|') {
            Some((text, spoken)) => (text.trim(), spoken.trim()),
            None => (field.trim(), field.trim()),
        };
        if text.is_empty() || spoken.is_empty() {
            return Err("empty speech text".to_owned());
        }
        Ok(Self {
            text: text.to_owned(),
            spoken: spoken.to_owned(),
        })
    }
}

/// One line of a dialogue.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Silence of the drawn length (seconds).
    Silence(Range),
    /// User speech that is not a complete turn (no item).
    Say(Speech),
    /// User speech that completes a turn: a smooth turn-taking item.
    Ask(Speech),
    /// A mid-sentence pause of the drawn length: a pause-handling item.
    Pause(Range),
    /// Where the agent is expected to start speaking, in seconds after the user's last offset.
    Expect(Range),
    /// A user interruption, its onset this many seconds into the agent's expected speech.
    Interrupt(Range, Speech),
    /// A user back-channel, placed like an interruption.
    Backchannel(Range, Speech),
}

/// A parsed dialogue with its voice ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialogue {
    pub id: String,
    /// The task this dialogue is written for (informational; items carry their own labels).
    pub task: String,
    pub voices: Vec<String>,
    /// espeak-ng words per minute.
    pub rate: Range,
    /// espeak-ng pitch, 0..99.
    pub pitch: Range,
    pub steps: Vec<Step>,
}

/// A script error, with the file name and 1-based line.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct ScriptError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

/// The scripts built into the binary (the files of `duplexbench/dialogues/`).
pub const BUILTIN_SCRIPTS: &[(&str, &str)] = &[
    (
        "turn-taking.txt",
        include_str!("../dialogues/turn-taking.txt"),
    ),
    ("pause.txt", include_str!("../dialogues/pause.txt")),
    (
        "interruption.txt",
        include_str!("../dialogues/interruption.txt"),
    ),
    (
        "backchannel.txt",
        include_str!("../dialogues/backchannel.txt"),
    ),
];

/// Parses every built-in script.
pub fn builtin_dialogues() -> Result<Vec<Dialogue>, ScriptError> {
    let mut all = Vec::new();
    for (name, text) in BUILTIN_SCRIPTS {
        all.extend(parse_script(name, text)?);
    }
    Ok(all)
}

const TASKS: &[&str] = &["turn-taking", "pause", "interruption", "backchannel"];

/// Parses one script file.
pub fn parse_script(source_name: &str, text: &str) -> Result<Vec<Dialogue>, ScriptError> {
    let error = |line: usize, message: String| ScriptError {
        source_name: source_name.to_owned(),
        line,
        message,
    };
    let mut default_voices = vec!["en-us".to_owned()];
    let mut default_rate = Range::fixed(170.0);
    let mut default_pitch = Range::fixed(50.0);
    let mut default_task = String::new();
    let mut dialogues: Vec<Dialogue> = Vec::new();
    let mut current: Option<Dialogue> = None;

    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = match raw_line.find('#') {
            Some(position) => &raw_line[..position],
            None => raw_line,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let (keyword, rest) = match line.split_once(char::is_whitespace) {
            Some((keyword, rest)) => (keyword, rest.trim()),
            None => (line, ""),
        };
        let need_rest = |what: &str| -> Result<&str, ScriptError> {
            if rest.is_empty() {
                Err(error(line_number, format!("`{keyword}` needs {what}")))
            } else {
                Ok(rest)
            }
        };
        let range = |text: &str| Range::parse(text).map_err(|m| error(line_number, m));
        // `keyword range | text`
        let speech = |field: &str| Speech::parse(field).map_err(|m| error(line_number, m));
        let range_and_text = || -> Result<(Range, Speech), ScriptError> {
            let rest = need_rest("`seconds | text`")?;
            let (range_text, text) = rest.split_once('|').ok_or_else(|| {
                error(
                    line_number,
                    format!("`{keyword}` needs `seconds | text`, with a `|`"),
                )
            })?;
            Ok((range(range_text.trim())?, speech(text)?))
        };

        match keyword {
            "dialogue" => {
                let id = need_rest("an id")?;
                if !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(error(
                        line_number,
                        format!("dialogue id `{id}` may only use letters, digits, `-` and `_`"),
                    ));
                }
                if dialogues.iter().chain(current.iter()).any(|d| d.id == id) {
                    return Err(error(line_number, format!("dialogue `{id}` defined twice")));
                }
                if let Some(done) = current.take() {
                    dialogues.push(done);
                }
                current = Some(Dialogue {
                    id: id.to_owned(),
                    task: default_task.clone(),
                    voices: default_voices.clone(),
                    rate: default_rate,
                    pitch: default_pitch,
                    steps: Vec::new(),
                });
            }
            "task" => {
                let task = need_rest("a task name")?;
                if !TASKS.contains(&task) {
                    return Err(error(
                        line_number,
                        format!("unknown task `{task}` (one of {})", TASKS.join(", ")),
                    ));
                }
                match current.as_mut() {
                    Some(dialogue) => dialogue.task = task.to_owned(),
                    None => default_task = task.to_owned(),
                }
            }
            "voice" => {
                let voices: Vec<String> = need_rest("one or more espeak-ng voice names")?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = voices.iter().find(|v| {
                    !v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_+:".contains(c))
                }) {
                    return Err(error(line_number, format!("bad voice name `{bad}`")));
                }
                match current.as_mut() {
                    Some(dialogue) => dialogue.voices = voices,
                    None => default_voices = voices,
                }
            }
            "rate" | "pitch" => {
                let value = range(need_rest("a number or a range a..b")?)?;
                let (low_limit, high_limit) = if keyword == "rate" {
                    (80.0, 450.0)
                } else {
                    (0.0, 99.0)
                };
                if value.low < low_limit || value.high > high_limit {
                    return Err(error(
                        line_number,
                        format!("{keyword} {value} is outside {low_limit}..{high_limit}"),
                    ));
                }
                let slot = match (current.as_mut(), keyword) {
                    (Some(d), "rate") => &mut d.rate,
                    (Some(d), _) => &mut d.pitch,
                    (None, "rate") => &mut default_rate,
                    (None, _) => &mut default_pitch,
                };
                *slot = value;
            }
            _ => {
                let dialogue = current.as_mut().ok_or_else(|| {
                    error(
                        line_number,
                        format!("`{keyword}` outside a dialogue (start one with `dialogue ID`)"),
                    )
                })?;
                let step = match keyword {
                    "silence" => Step::Silence(range(need_rest("seconds")?)?),
                    "pause" => Step::Pause(range(need_rest("seconds")?)?),
                    "expect" => Step::Expect(range(need_rest("seconds")?)?),
                    "say" => Step::Say(speech(need_rest("text")?)?),
                    "ask" => Step::Ask(speech(need_rest("text")?)?),
                    "interrupt" => {
                        let (r, t) = range_and_text()?;
                        Step::Interrupt(r, t)
                    }
                    "backchannel" => {
                        let (r, t) = range_and_text()?;
                        Step::Backchannel(r, t)
                    }
                    other => {
                        return Err(error(line_number, format!("unknown keyword `{other}`")));
                    }
                };
                if matches!(step, Step::Interrupt(..) | Step::Backchannel(..))
                    && !dialogue.steps.iter().any(|s| matches!(s, Step::Expect(_)))
                {
                    return Err(error(
                        line_number,
                        format!("`{keyword}` needs an earlier `expect` (where the agent speaks)"),
                    ));
                }
                dialogue.steps.push(step);
            }
        }
    }
    if let Some(done) = current.take() {
        dialogues.push(done);
    }
    for dialogue in &dialogues {
        if !dialogue
            .steps
            .iter()
            .any(|s| matches!(s, Step::Say(_) | Step::Ask(_)))
        {
            return Err(error(
                0,
                format!("dialogue `{}` has no user speech", dialogue.id),
            ));
        }
    }
    Ok(dialogues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_statement() {
        let text = "voice en-us en-gb+f3\nrate 150..190\n\ndialogue d1 # comment\ntask pause\n\
                    pitch 40\nsilence 0.5\nsay I was going to\npause 0.5..1.5\nask the coast?\n\
                    expect 0.6\ninterrupt 1.5..2.5 | Sorry, wait.\nbackchannel 1 | mm-hm | [[m@m'hm]]\n";
        let dialogues = parse_script("t.txt", text).unwrap();
        assert_eq!(dialogues.len(), 1);
        let d = &dialogues[0];
        assert_eq!(d.id, "d1");
        assert_eq!(d.task, "pause");
        assert_eq!(d.voices, vec!["en-us", "en-gb+f3"]);
        assert_eq!(
            d.rate,
            Range {
                low: 150.0,
                high: 190.0
            }
        );
        assert_eq!(d.pitch, Range::fixed(40.0));
        assert_eq!(
            d.steps,
            vec![
                Step::Silence(Range::fixed(0.5)),
                Step::Say(Speech::new("I was going to")),
                Step::Pause(Range {
                    low: 0.5,
                    high: 1.5
                }),
                Step::Ask(Speech::new("the coast?")),
                Step::Expect(Range::fixed(0.6)),
                Step::Interrupt(
                    Range {
                        low: 1.5,
                        high: 2.5
                    },
                    Speech::new("Sorry, wait.")
                ),
                Step::Backchannel(
                    Range::fixed(1.0),
                    Speech {
                        text: "mm-hm".into(),
                        spoken: "[[m@m'hm]]".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("dialogue a\nsay hi\nfrobnicate 3\n", 3, "unknown keyword"),
            ("say hi\n", 1, "outside a dialogue"),
            ("dialogue a\nsilence 2..1\n", 2, "upper bound"),
            ("dialogue a\nsilence -1\n", 2, ">= 0"),
            (
                "dialogue a\nsay x\ninterrupt 1 | hey\n",
                3,
                "earlier `expect`",
            ),
            ("dialogue a\nsay x\nexpect 1\ninterrupt 1 hey\n", 4, "`|`"),
            ("dialogue a\nsay x\ndialogue a\n", 3, "twice"),
            ("dialogue a\ntask chat\n", 2, "unknown task"),
            ("dialogue a\nrate 1000\n", 2, "outside"),
            ("dialogue a\nsilence 1\n", 0, "no user speech"),
        ];
        for (text, line, needle) in cases {
            let err = parse_script("bad.txt", text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn builtin_scripts_cover_the_four_tasks() {
        let dialogues = builtin_dialogues().unwrap();
        for task in TASKS {
            let count = dialogues.iter().filter(|d| d.task == *task).count();
            assert!(count >= 4, "{task}: only {count} dialogues");
        }
        let has = |f: fn(&Step) -> bool| dialogues.iter().flat_map(|d| &d.steps).any(f);
        assert!(has(
            |s| matches!(s, Step::Pause(r) if r.low >= 0.5 && r.high <= 1.5)
        ));
        assert!(has(|s| matches!(s, Step::Interrupt(..))));
        for word in ["mm-hm", "yeah", "right"] {
            assert!(
                dialogues.iter().flat_map(|d| &d.steps).any(
                    |s| matches!(s, Step::Backchannel(_, t) if t.text.to_lowercase().contains(word))
                ),
                "no back-channel `{word}`"
            );
        }
    }
}
