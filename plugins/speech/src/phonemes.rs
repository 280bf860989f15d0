//! Phonemes for Piper voices: IPA from the `espeak-ng` program, then Piper phoneme ids.
//!
//! espeak-ng is GPL-3. It is only ever run as a separate program (`espeak-ng -q --ipa`, text
//! on its standard input, IPA on its standard output); nothing here links libespeak-ng. See
//! the crate README.
//!
//! `espeak-ng --ipa` prints one line per clause and drops punctuation, but Piper voices were
//! trained with the clause punctuation in the phoneme string (it shapes pauses and
//! intonation). So the phrase is cut into clauses here, each clause is phonemised on its own,
//! and its punctuation is put back after its phonemes, as Piper's own front end does.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Errors of the espeak-ng front end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PhonemeError {
    #[error(
        "could not run `{program}`: {reason}. Install espeak-ng (Debian package `espeak-ng`, \
         scripts/setup.sh does it)"
    )]
    Program { program: String, reason: String },
    #[error("espeak-ng failed on voice `{voice}`: {message}")]
    Failed { voice: String, message: String },
}

/// Runs the `espeak-ng` program.
#[derive(Debug, Clone)]
pub struct Espeak {
    /// The program to run (`espeak-ng`, found on `PATH`).
    pub program: String,
    /// The espeak-ng voice (language), e.g. `en-us`.
    pub voice: String,
}

impl Espeak {
    pub fn new(voice: &str) -> Self {
        Self {
            program: "espeak-ng".into(),
            voice: voice.into(),
        }
    }

    /// Runs espeak-ng with `args`, `text` on standard input; returns standard output.
    pub fn run(&self, args: &[&str], text: &str) -> Result<Vec<u8>, PhonemeError> {
        let mut child = Command::new(&self.program)
            .args(args)
            .args(["-v", &self.voice, "-b", "1", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| PhonemeError::Program {
                program: self.program.clone(),
                reason: error.to_string(),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error shows up as a failed exit below.
            let _ = stdin.write_all(text.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|error| PhonemeError::Program {
                program: self.program.clone(),
                reason: error.to_string(),
            })?;
        // espeak-ng exits 0 even for some errors, but then says so on stderr.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || stderr.contains("Error") {
            return Err(PhonemeError::Failed {
                voice: self.voice.clone(),
                message: stderr.trim().to_owned(),
            });
        }
        Ok(output.stdout)
    }

    /// Checks that the program runs and knows the voice. (With text on standard input,
    /// espeak-ng silently falls back to its default voice, so this passes a fixed word as an
    /// argument, where an unknown voice is an error.)
    pub fn check(&self) -> Result<(), PhonemeError> {
        let output = Command::new(&self.program)
            .args(["-q", "--ipa", "-v", &self.voice, "test"])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| PhonemeError::Program {
                program: self.program.clone(),
                reason: error.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || stderr.contains("Error") || output.stdout.is_empty() {
            return Err(PhonemeError::Failed {
                voice: self.voice.clone(),
                message: stderr.trim().to_owned(),
            });
        }
        Ok(())
    }

    /// IPA of one clause: espeak-ng's clause lines joined with spaces.
    pub fn clause_ipa(&self, clause: &str) -> Result<String, PhonemeError> {
        let out = self.run(&["-q", "--ipa"], clause)?;
        let text = String::from_utf8_lossy(&out);
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// IPA of a phrase with Piper's clause punctuation: `həlˈoʊ ðˈɛɹ, hˈaʊ ɑːɹ juː?`.
    pub fn phrase_ipa(&self, phrase: &str) -> Result<String, PhonemeError> {
        let mut out = String::new();
        for (clause, punctuation) in clauses(phrase) {
            let ipa = self.clause_ipa(&clause)?;
            if ipa.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&ipa);
            if let Some(mark) = punctuation {
                out.push(mark);
            }
        }
        Ok(out)
    }
}

/// Cuts a phrase into clauses, each with the punctuation mark Piper expects after it
/// (`,` `.` `?` `!` `;` `:`). Dashes count as commas, an ellipsis as a full stop. Marks inside
/// words and numbers ("3.5", "1,000", "e.g.") are not clause ends.
pub fn clauses(phrase: &str) -> Vec<(String, Option<char>)> {
    let chars: Vec<char> = phrase.chars().collect();
    let mut out = Vec::new();
    let mut clause = String::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let mark = match c {
            ',' | '，' | '—' | '–' => Some(','),
            '.' | '…' | '。' => Some('.'),
            '?' | '？' => Some('?'),
            '!' | '！' => Some('!'),
            ';' | '；' => Some(';'),
            ':' => Some(':'),
            _ => None,
        };
        // A mark is a clause end only if whitespace or the end of the phrase follows the run of
        // marks and closing quotes it starts.
        if let Some(mut mark) = mark {
            let mut end = index + 1;
            while end < chars.len() && (is_mark(chars[end]) || is_closing(chars[end])) {
                if matches!(chars[end], '?' | '!') {
                    mark = chars[end];
                }
                end += 1;
            }
            let boundary = end == chars.len() || chars[end].is_whitespace();
            let word_before = clause.split_whitespace().last().unwrap_or("");
            let abbreviation = c == '.'
                && (word_before.contains('.') || crate::text::is_abbreviation(word_before));
            if boundary && !abbreviation && !clause.trim().is_empty() {
                out.push((clause.trim().to_owned(), Some(mark)));
                clause.clear();
                index = end;
                continue;
            }
        }
        clause.push(c);
        index += 1;
    }
    if !clause.trim().is_empty() {
        out.push((clause.trim().to_owned(), None));
    }
    out
}

fn is_mark(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | ',' | ';' | ':')
}

fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»')
}

/// A voice's `phoneme_id_map`: one IPA code point to its ids.
#[derive(Debug, Clone, PartialEq)]
pub struct PhonemeIdMap {
    ids: HashMap<char, Vec<i64>>,
    pad: Vec<i64>,
    bos: Vec<i64>,
    eos: Vec<i64>,
}

impl PhonemeIdMap {
    /// From the `.onnx.json` map (keys are single code points; others are ignored).
    /// The pad `_`, start `^` and end `$` symbols must be present.
    pub fn new(map: &HashMap<String, Vec<i64>>) -> Result<Self, String> {
        let mut ids = HashMap::new();
        for (key, value) in map {
            let mut chars = key.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                ids.insert(c, value.clone());
            }
        }
        let symbol = |c: char| {
            ids.get(&c)
                .cloned()
                .ok_or_else(|| format!("phoneme_id_map has no `{c}` symbol"))
        };
        Ok(Self {
            pad: symbol('_')?,
            bos: symbol('^')?,
            eos: symbol('$')?,
            ids,
        })
    }

    /// The ids of the word separator (space).
    pub fn space_ids(&self) -> Vec<i64> {
        self.ids.get(&' ').cloned().unwrap_or_default()
    }

    /// Piper's sequence: `^`, pad, then every known code point followed by pad, then `$`.
    /// Code points the voice does not know are skipped (as Piper does).
    pub fn ids(&self, ipa: &str) -> Vec<i64> {
        let mut out = self.bos.clone();
        out.extend_from_slice(&self.pad);
        for c in ipa.chars() {
            if let Some(ids) = self.ids.get(&c) {
                out.extend_from_slice(ids);
                out.extend_from_slice(&self.pad);
            }
        }
        out.extend_from_slice(&self.eos);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_keep_their_punctuation() {
        assert_eq!(
            clauses("Well, Mr. Li paid 3.50 dollars, e.g. for 1,000 units — right?!"),
            vec![
                ("Well".to_owned(), Some(',')),
                ("Mr. Li paid 3.50 dollars".to_owned(), Some(',')),
                ("e.g. for 1,000 units".to_owned(), Some(',')),
                ("right".to_owned(), Some('!')),
            ]
        );
        assert_eq!(
            clauses("no mark at the end"),
            vec![("no mark at the end".to_owned(), None)]
        );
        assert!(clauses("  ").is_empty());
    }

    #[test]
    fn piper_id_interleaving() {
        let mut map = HashMap::new();
        for (key, id) in [("_", 0), ("^", 1), ("$", 2), (" ", 3), ("a", 14), ("b", 15)] {
            map.insert(key.to_owned(), vec![id]);
        }
        map.insert("ab".to_owned(), vec![99]);
        let ids = PhonemeIdMap::new(&map).unwrap();
        // Unknown code points (x) are skipped.
        assert_eq!(ids.ids("ab x"), vec![1, 0, 14, 0, 15, 0, 3, 0, 2]);
        map.remove("$");
        assert!(PhonemeIdMap::new(&map).unwrap_err().contains('$'));
    }

    #[test]
    fn espeak_ipa_with_punctuation() {
        let espeak = Espeak::new("en-us");
        let ipa = espeak.phrase_ipa("Hello there, how are you?").unwrap();
        assert_eq!(ipa, "həlˈoʊ ðˈɛɹ, hˈaʊ ɑːɹ juː?");
        // A leading dash is text, not an option.
        assert!(espeak.phrase_ipa("-v hello").unwrap().contains("həlˈoʊ"));
        let missing = Espeak::new("nonexistentvoice").check().unwrap_err();
        assert!(
            missing.to_string().contains("nonexistentvoice"),
            "{missing}"
        );
    }
}
