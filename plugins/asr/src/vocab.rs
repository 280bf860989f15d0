//! Whisper's token strings (`vocabulary.txt`, one token a line, GPT-2 byte-level BPE) and the
//! way back from token ids to text.

use std::path::Path;

use crate::Error;

/// `<|endoftext|>`: the first special token; every id below it is text.
pub const END_OF_TEXT: u32 = 50256;
/// `<|startoftranscript|>`.
pub const START_OF_TRANSCRIPT: u32 = 50257;
/// `<|notimestamps|>`.
pub const NO_TIMESTAMPS: u32 = 50362;

/// Token id → bytes of its text.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Bytes of each text token (ids below [`END_OF_TEXT`]).
    text_tokens: Vec<Vec<u8>>,
    /// Number of lines, special tokens included.
    len: usize,
}

impl Vocabulary {
    /// Reads `vocabulary.txt`. Every text token must decode through the GPT-2 byte table and
    /// the special tokens must sit at their usual ids, or the file is refused.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |detail: String| Error::Vocabulary {
            path: path.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: path.to_owned(),
            },
            _ => bad(error.to_string()),
        })?;
        let lines: Vec<&str> = text.lines().collect();
        for (id, want) in [
            (END_OF_TEXT, "<|endoftext|>"),
            (START_OF_TRANSCRIPT, "<|startoftranscript|>"),
            (NO_TIMESTAMPS, "<|notimestamps|>"),
        ] {
            let got = lines.get(id as usize).copied().unwrap_or("(missing)");
            if got != want {
                return Err(bad(format!(
                    "token {id} is {got:?}, expected {want:?}: not a Whisper English vocabulary"
                )));
            }
        }
        let byte_of = unicode_to_byte();
        let mut text_tokens = Vec::with_capacity(END_OF_TEXT as usize);
        for (id, token) in lines[..END_OF_TEXT as usize].iter().enumerate() {
            let bytes = token
                .chars()
                .map(|c| byte_of(c).ok_or(c))
                .collect::<Result<Vec<u8>, char>>()
                .map_err(|c| {
                    bad(format!(
                        "token {id} ({token:?}) has {c:?}, which is not in the GPT-2 byte table"
                    ))
                })?;
            text_tokens.push(bytes);
        }
        Ok(Vocabulary {
            text_tokens,
            len: lines.len(),
        })
    }

    /// Number of tokens, special tokens included (51 864 for tiny.en).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vocabulary has no tokens (never true for a loaded one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text of `tokens`: special tokens are skipped, the bytes are read as UTF-8 (invalid
    /// sequences become U+FFFD), and surrounding whitespace is trimmed.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &token in tokens {
            if let Some(piece) = self.text_tokens.get(token as usize) {
                bytes.extend_from_slice(piece);
            }
        }
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

/// The inverse of GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves,
/// the other 68 bytes were moved to U+0100 onwards in byte order.
fn unicode_to_byte() -> impl Fn(char) -> Option<u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = [0u8; 68];
    let mut moved = 0;
    for b in 0..=255u8 {
        if !printable(b) {
            table[moved] = b;
            moved += 1;
        }
    }
    move |c: char| {
        let code = u32::from(c);
        match code {
            0..=255 if printable(code as u8) => Some(code as u8),
            256..=323 => Some(table[(code - 256) as usize]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_round_trips_all_bytes() {
        let byte_of = unicode_to_byte();
        // 'Ġ' (U+0120) is the space byte, 'Ċ' (U+010A) the newline.
        assert_eq!(byte_of('Ġ'), Some(b' '));
        assert_eq!(byte_of('Ċ'), Some(b'\n'));
        assert_eq!(byte_of('a'), Some(b'a'));
        assert_eq!(byte_of('\u{0100}'), Some(0));
        assert_eq!(byte_of('\u{0144}'), None);
        let mut seen = [false; 256];
        for code in 0..=323u32 {
            if let Some(b) = char::from_u32(code).and_then(&byte_of) {
                assert!(!seen[b as usize], "byte {b} mapped twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "every byte must be reachable");
    }
}
