//! Word error rate on normalised words, for tests that check a transcript against the text
//! that was spoken.
//!
//! Normalisation: lowercase; apostrophes are removed (`don't` = `dont`); every other
//! character that is not a letter or a digit separates words. Numbers are **not** spelled
//! out, so "ten" against "10" counts as one substitution: choose test sentences without
//! numbers, or write the reference the way Whisper writes numbers.

/// The words of `text` after normalisation (see the module documentation).
pub fn normalize_words(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_alphanumeric() {
            cleaned.extend(c.to_lowercase());
        } else if c == '\'' || c == '\u{2019}' {
            // "don't", "o'clock": keep the word in one piece.
        } else {
            cleaned.push(' ');
        }
    }
    cleaned.split_whitespace().map(str::to_owned).collect()
}

/// The edit counts of a word alignment (minimum edit distance over normalised words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordErrors {
    pub substitutions: usize,
    pub deletions: usize,
    pub insertions: usize,
    /// Words in the normalised reference.
    pub reference_words: usize,
}

impl WordErrors {
    /// Total edits.
    pub fn edits(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// Edits divided by the reference length. An empty reference gives 0.0 when the
    /// hypothesis is empty too and 1.0 otherwise (so an empty reference never hides output).
    pub fn rate(&self) -> f64 {
        match (self.reference_words, self.edits()) {
            (0, 0) => 0.0,
            (0, _) => 1.0,
            (words, edits) => edits as f64 / words as f64,
        }
    }
}

/// Aligns the normalised words of `hypothesis` to those of `reference`.
pub fn word_errors(reference: &str, hypothesis: &str) -> WordErrors {
    let reference = normalize_words(reference);
    let hypothesis = normalize_words(hypothesis);
    // cost[j] holds (edits, substitutions, deletions, insertions) for the current row;
    // ties prefer substitution, then deletion, then insertion.
    type Cell = (usize, usize, usize, usize);
    let mut previous: Vec<Cell> = (0..=hypothesis.len()).map(|j| (j, 0, 0, j)).collect();
    let mut current: Vec<Cell> = vec![(0, 0, 0, 0); hypothesis.len() + 1];
    for (i, reference_word) in reference.iter().enumerate() {
        current[0] = (i + 1, 0, i + 1, 0);
        for (j, hypothesis_word) in hypothesis.iter().enumerate() {
            let diagonal = previous[j];
            let substitute = if reference_word == hypothesis_word {
                diagonal
            } else {
                (diagonal.0 + 1, diagonal.1 + 1, diagonal.2, diagonal.3)
            };
            let up = previous[j + 1];
            let delete = (up.0 + 1, up.1, up.2 + 1, up.3);
            let left = current[j];
            let insert = (left.0 + 1, left.1, left.2, left.3 + 1);
            current[j + 1] = [substitute, delete, insert]
                .into_iter()
                .min_by_key(|cell| cell.0)
                .unwrap_or(substitute);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    let (_, substitutions, deletions, insertions) = previous[hypothesis.len()];
    WordErrors {
        substitutions,
        deletions,
        insertions,
        reference_words: reference.len(),
    }
}

/// Word error rate of `hypothesis` against `reference` on normalised words: (substitutions +
/// deletions + insertions) / reference words. See [`WordErrors::rate`] for an empty reference.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    word_errors(reference, hypothesis).rate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_and_punctuation() {
        assert_eq!(
            normalize_words("Hello there, the Quick-Brown fox. Don't!"),
            ["hello", "there", "the", "quick", "brown", "fox", "dont"]
        );
        assert_eq!(word_error_rate("Hello there.", "hello, THERE"), 0.0);
    }

    #[test]
    fn counts_each_kind_of_edit() {
        let errors = word_errors("the quick brown fox", "the quack brown fox jumps");
        assert_eq!(
            errors,
            WordErrors {
                substitutions: 1,
                deletions: 0,
                insertions: 1,
                reference_words: 4
            }
        );
        assert_eq!(errors.rate(), 0.5);
        let errors = word_errors("a b c d", "a d");
        assert_eq!((errors.deletions, errors.edits()), (2, 2));
        assert_eq!(word_error_rate("one two", "three four five six"), 2.0);
    }

    #[test]
    fn empty_sides() {
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("...", "hello"), 1.0);
        assert_eq!(word_error_rate("hello world", ""), 1.0);
    }

    #[test]
    fn numbers_are_not_spelled_out() {
        assert_eq!(
            word_error_rate("at ten o'clock", "at 10 o'clock"),
            1.0 / 3.0
        );
    }
}
