//! The GPT-2 style byte-level BPE tokenizer that a GGUF file describes (`tokenizer.ggml.model =
//! gpt2`), with the pre-tokenizer of SmolLM2 (`tokenizer.ggml.pre = smollm`: every digit on its
//! own, then the GPT-2 split pattern).
//!
//! Built from the GGUF metadata alone (tokens, token types, merges), so the model file is the only
//! thing to ship. The token ids match Hugging Face `tokenizers` built from the same vocabulary,
//! merges and pre-tokenizer (the unit tests pin ids taken from it).

use std::collections::HashMap;

use candle_core::quantized::gguf_file;

/// GGUF `tokenizer.ggml.token_type` of a control token (`<|im_start|>` and friends).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// The GPT-2 split pattern (as in Hugging Face `ByteLevel(use_regex = true)`).
const SPLIT_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the GGUF metadata has no {0}")]
    Missing(&'static str),
    #[error("the GGUF tokenizer is {0:?}; only the byte-level BPE (gpt2) tokenizer is supported")]
    Unsupported(String),
    #[error("bad tokenizer metadata: {0}")]
    Bad(String),
}

/// A byte-level BPE tokenizer.
pub struct Tokenizer {
    token_ids: HashMap<String, u32>,
    tokens: Vec<String>,
    merge_ranks: HashMap<(String, String), usize>,
    /// Control tokens, longest first, matched literally in the input.
    control_tokens: Vec<(String, u32)>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    split: fancy_regex::Regex,
}

impl Tokenizer {
    /// Reads the tokenizer from GGUF metadata.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, TokenizerError> {
        let get = |key: &'static str| {
            content
                .metadata
                .get(key)
                .ok_or(TokenizerError::Missing(key))
        };
        let model = get("tokenizer.ggml.model")?
            .to_string()
            .map_err(|err| TokenizerError::Bad(err.to_string()))?;
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported(model.clone()));
        }
        let strings = |key: &'static str| -> Result<Vec<String>, TokenizerError> {
            get(key)?
                .to_vec()
                .map_err(|err| TokenizerError::Bad(err.to_string()))?
                .iter()
                .map(|value| {
                    value
                        .to_string()
                        .cloned()
                        .map_err(|err| TokenizerError::Bad(err.to_string()))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let token_types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(value) => value
                .to_vec()
                .map_err(|err| TokenizerError::Bad(err.to_string()))?
                .iter()
                .map(|value| value.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let token_ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let mut merge_ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = merge
                .split_once(' ')
                .ok_or_else(|| TokenizerError::Bad(format!("merge {rank} has no space")))?;
            merge_ranks.insert((left.to_owned(), right.to_owned()), rank);
        }
        let mut control_tokens: Vec<(String, u32)> = tokens
            .iter()
            .zip(&token_types)
            .enumerate()
            .filter(|(_, (token, kind))| **kind == TOKEN_TYPE_CONTROL && !token.is_empty())
            .map(|(id, (token, _))| (token.clone(), id as u32))
            .collect();
        control_tokens.sort_by_key(|(token, _)| std::cmp::Reverse(token.len()));
        let byte_to_char = bytes_to_unicode();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(byte, ch)| (*ch, byte as u8))
            .collect();
        let split = fancy_regex::Regex::new(SPLIT_PATTERN)
            .map_err(|err| TokenizerError::Bad(err.to_string()))?;
        Ok(Self {
            token_ids,
            tokens,
            merge_ranks,
            control_tokens,
            byte_to_char,
            char_to_byte,
            split,
        })
    }

    /// The id of a token given by its text (for example `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.token_ids.get(token).copied()
    }

    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Encodes text; control tokens written literally (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest control token in the rest of the text, longest first on a tie.
            let next = self
                .control_tokens
                .iter()
                .filter_map(|(token, id)| rest.find(token.as_str()).map(|at| (at, token, *id)))
                .min_by_key(|(at, token, _)| (*at, std::cmp::Reverse(token.len())));
            match next {
                Some((at, token, id)) => {
                    self.encode_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + token.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    rest = "";
                }
            }
        }
        ids
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        // SmolLM2's pre-tokenizer: each numeric character is a piece of its own, then the
        // GPT-2 pattern splits the text between them.
        let mut start = 0;
        for (at, ch) in text.char_indices() {
            if ch.is_numeric() {
                self.encode_split(&text[start..at], ids);
                self.encode_split(&text[at..at + ch.len_utf8()], ids);
                start = at + ch.len_utf8();
            }
        }
        self.encode_split(&text[start..], ids);
    }

    fn encode_split(&self, text: &str, ids: &mut Vec<u32>) {
        let mut at = 0;
        while at < text.len() {
            // The pattern always matches at least one character of a non-empty text; on a
            // regex failure (backtrack limit) take the rest as one piece.
            let piece = match self.split.find_from_pos(text, at) {
                Ok(Some(found)) if found.start() == at && found.end() > at => found.as_str(),
                _ => &text[at..],
            };
            self.encode_word(piece, ids);
            at += piece.len();
        }
    }

    fn encode_word(&self, word: &str, ids: &mut Vec<u32>) {
        let mut symbols: Vec<String> = word
            .bytes()
            .map(|byte| self.byte_to_char[byte as usize].to_string())
            .collect();
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(index, pair)| {
                    self.merge_ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|rank| (*rank, index))
                })
                .min();
            let Some((_, index)) = best else { break };
            let right = symbols.remove(index + 1);
            symbols[index].push_str(&right);
        }
        for symbol in symbols {
            match self.token_ids.get(&symbol) {
                Some(id) => ids.push(*id),
                // A byte-level vocabulary holds every single byte, so this only happens with a
                // broken vocabulary: fall back to the bytes one by one.
                None => ids.extend(
                    symbol
                        .chars()
                        .filter_map(|ch| self.token_ids.get(&ch.to_string()).copied()),
                ),
            }
        }
    }

    /// The raw bytes of a token (control tokens give their literal text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(token) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        if self
            .control_tokens
            .iter()
            .any(|(_, control)| *control == id)
        {
            return token.as_bytes().to_vec();
        }
        token
            .chars()
            .map(|ch| self.char_to_byte.get(&ch).copied().unwrap_or(b'?'))
            .collect()
    }

    /// Decodes ids to text (invalid UTF-8 is replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| self.token_bytes(*id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Turns a stream of tokens into text pieces, holding back bytes of a character that is split
/// across tokens.
#[derive(Default)]
pub struct TextStream {
    pending: Vec<u8>,
}

impl TextStream {
    /// The text that the token completes (may be empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        self.push_bytes(&tokenizer.token_bytes(id))
    }

    /// The text that the bytes of one token complete (may be empty).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(err) if err.error_len().is_none() => err.valid_up_to(),
            // A byte sequence that can never become valid: give it out replaced.
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    /// Whatever is still held back, replaced where invalid.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let printable = |byte: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&byte)
            || (0xA1..=0xAC).contains(&byte)
            || (0xAE..=0xFF).contains(&byte)
    };
    let mut next = 256u32;
    for (byte, slot) in map.iter_mut().enumerate() {
        let byte = byte as u32;
        let code = if printable(byte) {
            byte
        } else {
            let code = next;
            next += 1;
            code
        };
        *slot = char::from_u32(code).unwrap_or('?');
    }
    map
}
