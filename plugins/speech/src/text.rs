//! Streaming text handling: UTF-8 reassembly across buffers and the phrase splitter.
//!
//! Text arrives in arbitrary pieces (LLM tokens, 4 kB file chunks). [`PhraseSplitter`] cuts it
//! into phrases at sentence and clause boundaries as soon as a boundary is certain, so that
//! synthesis can start before the whole answer is known. Every phrase carries its character
//! and byte offsets in the utterance, which is what *progress* reports.

/// Words after which a dot does not end a sentence (compared lower-case, without the dot).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "inc", "ltd",
    "co", "corp", "no", "nos", "approx", "dept", "est", "fig", "gen", "gov", "lt", "mt", "rev",
    "sgt", "capt", "col", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "u.s", "u.k", "a.m", "p.m",
    "ph.d", "cf", "al", "ave", "blvd", "rd", "mins", "hrs",
];

/// Is `word` (without its final dot) a known abbreviation or a capital initial?
pub fn is_abbreviation(word: &str) -> bool {
    let word = word.trim_start_matches(['(', '"', '\'', '“', '‘']);
    let mut letters = word.chars();
    if let (Some(first), None) = (letters.next(), letters.next()) {
        return first.is_uppercase();
    }
    ABBREVIATIONS.contains(&word.to_lowercase().as_str())
}

/// Phrase-splitting parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitConfig {
    /// A clause boundary (`,` `;` `:` or a dash) cuts only after at least this many words.
    pub min_clause_words: usize,
    /// A phrase without any boundary is cut at the last space before this many characters.
    pub max_phrase_chars: usize,
    /// When non-zero, the first phrase of an utterance is cut after this many words even
    /// without punctuation, so that the first audio leaves sooner.
    pub first_phrase_words: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            min_clause_words: 2,
            max_phrase_chars: 300,
            first_phrase_words: 0,
        }
    }
}

/// One phrase of an utterance, with its place in the utterance text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// The phrase text, trimmed of surrounding whitespace.
    pub text: String,
    /// Offset (in characters) of the phrase's first character in the utterance.
    pub start_char: u64,
    /// Offset (in characters) just past the phrase's last character.
    pub end_char: u64,
    /// The same offsets in UTF-8 bytes.
    pub start_byte: u64,
    pub end_byte: u64,
    /// The phrase ends a sentence (so the sentence silence follows it).
    pub sentence_end: bool,
}

impl Phrase {
    /// Character and byte offsets (in the utterance) of the end of every word of the phrase,
    /// in order. Used to report progress at word granularity.
    pub fn word_ends(&self) -> Vec<(u64, u64)> {
        let mut ends = Vec::new();
        let mut chars = self.start_char;
        let mut bytes = self.start_byte;
        let mut in_word = false;
        for c in self.text.chars() {
            if c.is_whitespace() {
                if in_word {
                    ends.push((chars, bytes));
                }
                in_word = false;
            } else {
                in_word = true;
            }
            chars += 1;
            bytes += c.len_utf8() as u64;
        }
        if in_word {
            ends.push((chars, bytes));
        }
        ends
    }
}

impl Phrase {
    /// [`Phrase::word_ends`] of the words that are spoken: words with a letter or a digit
    /// (not emoji, dashes or lone punctuation).
    pub fn word_ends_spoken(&self) -> Vec<(u64, u64)> {
        let mut ends = Vec::new();
        let mut chars = self.start_char;
        let mut bytes = self.start_byte;
        let mut word_has_letters = false;
        let mut in_word = false;
        for c in self.text.chars() {
            if c.is_whitespace() {
                if in_word && word_has_letters {
                    ends.push((chars, bytes));
                }
                in_word = false;
                word_has_letters = false;
            } else {
                in_word = true;
                word_has_letters |= c.is_alphanumeric() && !is_emoji(c);
            }
            chars += 1;
            bytes += c.len_utf8() as u64;
        }
        if in_word && word_has_letters {
            ends.push((chars, bytes));
        }
        ends
    }
}

/// Cuts a stream of text into phrases.
#[derive(Debug, Clone, Default)]
pub struct PhraseSplitter {
    config: SplitConfig,
    /// Text received and not yet part of a phrase.
    pending: String,
    /// Offsets of `pending`'s first character in the utterance.
    pending_char: u64,
    pending_byte: u64,
    phrases_emitted: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Cut after this many bytes of `pending`; the flag says the phrase ends a sentence.
    At(usize, bool),
    /// No boundary is certain yet.
    Undecided,
}

impl PhraseSplitter {
    pub fn new(config: SplitConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Adds text and returns every phrase that is now complete.
    pub fn push(&mut self, text: &str) -> Vec<Phrase> {
        self.pending.push_str(text);
        let mut phrases = Vec::new();
        while let Cut::At(end, sentence_end) = self.find_cut(false) {
            if let Some(phrase) = self.take(end, sentence_end) {
                phrases.push(phrase);
            }
        }
        phrases
    }

    /// Ends the text: returns what is left as phrases (empty when nothing is left).
    pub fn finish(&mut self) -> Vec<Phrase> {
        let mut phrases = Vec::new();
        while let Cut::At(end, sentence_end) = self.find_cut(true) {
            if let Some(phrase) = self.take(end, sentence_end) {
                phrases.push(phrase);
            }
        }
        let rest = self.pending.len();
        if let Some(phrase) = self.take(rest, true) {
            phrases.push(phrase);
        }
        phrases
    }

    /// The number of characters received so far (the utterance length).
    pub fn received_chars(&self) -> u64 {
        self.pending_char + self.pending.chars().count() as u64
    }

    /// Takes `pending[..end]` as a phrase; `None` (but offsets advanced) if it is blank.
    fn take(&mut self, end: usize, sentence_end: bool) -> Option<Phrase> {
        if end == 0 {
            return None;
        }
        let raw: String = self.pending.drain(..end).collect();
        let leading = raw.len() - raw.trim_start().len();
        let leading_chars = raw[..leading].chars().count() as u64;
        let text = raw.trim();
        let start_char = self.pending_char + leading_chars;
        let start_byte = self.pending_byte + leading as u64;
        self.pending_char += raw.chars().count() as u64;
        self.pending_byte += raw.len() as u64;
        if text.is_empty() {
            return None;
        }
        self.phrases_emitted += 1;
        Some(Phrase {
            text: text.to_owned(),
            start_char,
            end_char: start_char + text.chars().count() as u64,
            start_byte,
            end_byte: start_byte + text.len() as u64,
            sentence_end,
        })
    }

    /// Finds the first certain boundary in `pending`. With `at_end`, the end of the text
    /// counts as whitespace after a terminator.
    fn find_cut(&self, at_end: bool) -> Cut {
        let text = self.pending.as_str();
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut words = 0usize;
        let mut in_word = false;
        let mut last_space: Option<usize> = None;
        let mut index = 0;
        while index < chars.len() {
            let (byte, c) = chars[index];
            if c.is_whitespace() {
                if in_word {
                    words += 1;
                }
                in_word = false;
                last_space = Some(byte);
                // A blank line ends a paragraph.
                if c == '\n'
                    && let Some(&(_, next)) = chars.get(index + 1)
                    && next == '\n'
                    && words > 0
                {
                    return Cut::At(byte, true);
                }
                // Fast start: cut the first phrase after a few words.
                if self.phrases_emitted == 0
                    && self.config.first_phrase_words > 0
                    && words >= self.config.first_phrase_words
                    && chars[index + 1..].iter().any(|(_, c)| !c.is_whitespace())
                {
                    return Cut::At(byte, false);
                }
            } else {
                in_word = true;
            }

            if is_sentence_terminator(c) || is_clause_punctuation(c) {
                // The run of terminators and closing quotes/brackets: `?!`, `."`, `.)`.
                let mut run_end = index + 1;
                while run_end < chars.len()
                    && (is_sentence_terminator(chars[run_end].1) || is_closing(chars[run_end].1))
                {
                    run_end += 1;
                }
                let end_byte = chars.get(run_end).map_or(text.len(), |&(b, _)| b);
                let followed_by_space = chars.get(run_end).is_some_and(|&(_, c)| c.is_whitespace());
                let at_text_end = run_end == chars.len();
                let sentence = chars[index..run_end]
                    .iter()
                    .any(|&(_, c)| is_sentence_terminator(c));
                if sentence {
                    let decided = followed_by_space || at_text_end;
                    if decided && !self.is_abbreviation_or_number(&chars, index, run_end, at_end) {
                        if followed_by_space || at_end || self.end_of_buffer_is_final(&chars, index)
                        {
                            return Cut::At(end_byte, true);
                        }
                        return Cut::Undecided;
                    }
                } else if (followed_by_space || (at_text_end && at_end))
                    && words + usize::from(in_word) >= self.config.min_clause_words
                {
                    return Cut::At(end_byte, false);
                }
                index = run_end;
                continue;
            }

            if chars.len() > self.config.max_phrase_chars && index >= self.config.max_phrase_chars {
                if let Some(space) = last_space.filter(|&s| s > 0) {
                    return Cut::At(space, false);
                }
                return Cut::At(byte, false);
            }
            index += 1;
        }
        Cut::Undecided
    }

    /// A dot that belongs to an abbreviation, an initial or a number is not a sentence end.
    fn is_abbreviation_or_number(
        &self,
        chars: &[(usize, char)],
        index: usize,
        run_end: usize,
        at_end: bool,
    ) -> bool {
        if chars[index].1 != '.' || run_end != index + 1 {
            return false;
        }
        // The word before the dot.
        let mut start = index;
        while start > 0 && !chars[start - 1].1.is_whitespace() {
            start -= 1;
        }
        let word: String = chars[start..index]
            .iter()
            .map(|&(_, c)| c)
            .collect::<String>()
            .trim_start_matches(['(', '"', '\'', '“', '‘'])
            .to_lowercase();
        if word.is_empty() {
            return false;
        }
        if ABBREVIATIONS.contains(&word.as_str()) {
            return true;
        }
        // An initial ("J. R. R. Tolkien").
        let mut letters = word.chars();
        if let (Some(first), None) = (letters.next(), letters.next())
            && first.is_alphabetic()
            && chars[start].1.is_uppercase()
        {
            return true;
        }
        // A dot followed by a lower-case word continues the sentence ("approx. ten").
        if !at_end {
            let next_word = chars[run_end..].iter().find(|(_, c)| !c.is_whitespace());
            if let Some(&(_, c)) = next_word
                && c.is_lowercase()
            {
                return true;
            }
        }
        false
    }

    /// A terminator at the very end of the received text: cut now only when it cannot be the
    /// start of a number ("3." then "14") or of an abbreviation; otherwise wait for more text.
    fn end_of_buffer_is_final(&self, chars: &[(usize, char)], index: usize) -> bool {
        let c = chars[index].1;
        if c != '.' {
            return true;
        }
        index > 0 && !chars[index - 1].1.is_ascii_digit()
    }
}

fn is_sentence_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？')
}

fn is_clause_punctuation(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '—' | '–' | '，' | '；')
}

fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»')
}

/// Is `c` a pictograph (emoji and the joiners and selectors that build them)?
pub fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF   // pictographs, emoticons, transport, flags, symbols
        | 0x2600..=0x27BF   // miscellaneous symbols, dingbats
        | 0x2B00..=0x2BFF   // arrows and stars used as emoji
        | 0xFE00..=0xFE0F   // variation selectors
        | 0x200D            // zero-width joiner
        | 0xE0020..=0xE007F // tag characters (subdivision flags)
    )
}

/// The text to hand to the voice: emoji removed, runs of whitespace collapsed. `None` when
/// nothing pronounceable (no letter or digit) is left.
pub fn speakable(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars().filter(|&c| !is_emoji(c)) {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out.chars().any(char::is_alphanumeric).then_some(out)
}

/// Reassembles UTF-8 text split at arbitrary byte positions (a 4 kB file chunk may end in the
/// middle of a character). Invalid sequences become U+FFFD.
#[derive(Debug, Clone, Default)]
pub struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// Decodes `bytes` after what was carried; keeps an incomplete character at the end.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    out.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    // Safe: from_utf8 said this prefix is valid.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.carry.is_empty() {
            String::new()
        } else {
            self.carry.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

/// The phrases a *prepare* event asks for, split as each line would be when spoken. With
/// `partial`, the last line is text still arriving: only its phrases the splitter knows to be
/// complete are given (not its unfinished end, nor a last sentence that may yet go on, like
/// "Dr." before "Smith").
pub fn phrases_to_prepare(config: SplitConfig, lines: &[String], partial: bool) -> Vec<String> {
    let last = lines.len().saturating_sub(1);
    let mut texts = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let mut splitter = PhraseSplitter::new(config);
        let mut phrases = splitter.push(line);
        if !(partial && index == last) {
            phrases.extend(splitter.finish());
        }
        texts.extend(phrases.into_iter().map(|p| p.text));
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_prepare_gives_only_complete_phrases() {
        let config = SplitConfig::default();
        let lines = |text: &str| vec![text.to_owned()];
        let answer = "The museum opens at ten. Dr. Smith leads the first tour";
        assert_eq!(
            phrases_to_prepare(config, &lines(answer), true),
            ["The museum opens at ten."],
            "the unfinished sentence and the abbreviation wait"
        );
        assert!(phrases_to_prepare(config, &lines("It opens at 9."), true).is_empty());
        assert_eq!(
            phrases_to_prepare(config, &lines("It opens at 9.30 today. Come"), true),
            ["It opens at 9.30 today."]
        );
        // Whole phrases (fillers, a finished answer): everything, split as it will be spoken.
        assert_eq!(
            phrases_to_prepare(
                config,
                &[String::from("One moment."), lines(answer)[0].clone()],
                false
            ),
            [
                "One moment.",
                "The museum opens at ten.",
                "Dr. Smith leads the first tour"
            ]
        );
    }

    fn texts(phrases: &[Phrase]) -> Vec<&str> {
        phrases.iter().map(|p| p.text.as_str()).collect()
    }

    fn split_all(text: &str, config: SplitConfig) -> Vec<Phrase> {
        let mut splitter = PhraseSplitter::new(config);
        let mut phrases = splitter.push(text);
        phrases.extend(splitter.finish());
        phrases
    }

    #[test]
    fn sentences_and_clauses() {
        let phrases = split_all(
            "Hello there, how are you today? I am fine. Thanks!",
            SplitConfig::default(),
        );
        assert_eq!(
            texts(&phrases),
            [
                "Hello there,",
                "how are you today?",
                "I am fine.",
                "Thanks!"
            ]
        );
        assert!(!phrases[0].sentence_end);
        assert!(phrases[1].sentence_end);
    }

    #[test]
    fn numbers_and_abbreviations_do_not_split() {
        let phrases = split_all(
            "Mr. Smith paid $3.50 for 1,234 apples, e.g. the red ones. J. R. R. Tolkien wrote it at 10 a.m. today. Pi is approx. 3.14.",
            SplitConfig::default(),
        );
        assert_eq!(
            texts(&phrases),
            [
                "Mr. Smith paid $3.50 for 1,234 apples,",
                "e.g. the red ones.",
                "J. R. R. Tolkien wrote it at 10 a.m. today.",
                "Pi is approx. 3.14."
            ]
        );
    }

    #[test]
    fn streaming_equals_whole_and_offsets_point_into_the_text() {
        let text = "Well, the café’s open — come in. Are you sure?! Yes: “quite.” Then 3.5 km, OK";
        let whole = split_all(text, SplitConfig::default());
        // Feed it as an LLM would: word tokens, each with its leading space.
        let mut splitter = PhraseSplitter::new(SplitConfig::default());
        let mut streamed = Vec::new();
        let mut token = String::new();
        for c in text.chars() {
            if c.is_whitespace() && !token.trim().is_empty() {
                streamed.extend(splitter.push(&token));
                token.clear();
            }
            token.push(c);
        }
        streamed.extend(splitter.push(&token));
        streamed.extend(splitter.finish());
        assert_eq!(streamed, whole);
        for phrase in &whole {
            let by_chars: String = text
                .chars()
                .skip(phrase.start_char as usize)
                .take((phrase.end_char - phrase.start_char) as usize)
                .collect();
            assert_eq!(by_chars, phrase.text);
            assert_eq!(
                &text[phrase.start_byte as usize..phrase.end_byte as usize],
                phrase.text
            );
        }
        assert_eq!(whole.last().unwrap().end_char, text.chars().count() as u64);
    }

    #[test]
    fn a_finished_sentence_at_the_end_of_a_buffer_is_released_at_once() {
        let mut splitter = PhraseSplitter::new(SplitConfig::default());
        assert_eq!(texts(&splitter.push("Hello there.")), ["Hello there."]);
        // A digit before the dot waits: it may be a decimal number.
        assert!(splitter.push(" It costs 3.").is_empty());
        assert_eq!(
            texts(&splitter.push("50 dollars. ")),
            ["It costs 3.50 dollars."]
        );
        assert!(splitter.push("Mr.").is_empty());
        assert!(splitter.push(" Smith").is_empty());
        assert_eq!(texts(&splitter.finish()), ["Mr. Smith"]);
    }

    #[test]
    fn long_text_without_punctuation_is_cut_at_spaces() {
        let text = "word ".repeat(2000);
        let phrases = split_all(&text, SplitConfig::default());
        assert!(phrases.len() > 20, "{} phrases", phrases.len());
        assert!(phrases.iter().all(|p| p.text.len() <= 300));
        let words: usize = phrases
            .iter()
            .map(|p| p.text.split_whitespace().count())
            .sum();
        assert_eq!(words, 2000);
    }

    #[test]
    fn first_phrase_fast_start() {
        let config = SplitConfig {
            first_phrase_words: 4,
            ..SplitConfig::default()
        };
        let phrases = split_all(
            "The quick brown fox jumps over the lazy dog near the river. And then it slept.",
            config,
        );
        assert_eq!(
            texts(&phrases),
            [
                "The quick brown fox",
                "jumps over the lazy dog near the river.",
                "And then it slept."
            ]
        );
    }

    #[test]
    fn word_ends_in_utterance_offsets() {
        let phrases = split_all("Go now. Héllo wörld!", SplitConfig::default());
        assert_eq!(phrases[1].word_ends(), vec![(13, 14), (20, 22)]);
    }

    #[test]
    fn speakable_text() {
        assert_eq!(speakable("😀 🎉👍🏽"), None);
        assert_eq!(speakable("  ...  "), None);
        assert_eq!(speakable("Great 👍 job!\n"), Some("Great job!".into()));
        assert_eq!(speakable("❤️ 42"), Some("42".into()));
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let text = "naïve café 😀";
        let bytes = text.as_bytes();
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            out.push_str(&stream.push(chunk));
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
        let mut bad = Utf8Stream::default();
        assert_eq!(bad.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(bad.push(b"\xe2\x82"), "");
        assert_eq!(bad.finish(), "\u{fffd}");
    }
}
