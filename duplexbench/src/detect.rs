//! Agent speech detection on the recorded output: frame energy with hysteresis, then refined to
//! the sample.
//!
//! 1. The signal is cut into hops of `hop_ms` (10 ms) and each hop's RMS level in dBFS is taken.
//! 2. Hysteresis: speech starts at a hop at or above `on_db` (-35 dBFS) and extends backwards
//!    over the directly preceding hops at or above `off_db` (-45 dBFS); it continues while hops
//!    stay at or above `off_db`.
//! 3. Gaps shorter than `min_silence_ms` (300 ms: word and comma gaps of synthesized speech)
//!    are bridged; stretches shorter than `min_speech_ms` (60 ms: clicks) are dropped.
//! 4. Each boundary is refined to the sample. A sample is *loud* when its magnitude reaches the
//!    `off_db` level. The onset is the first loud sample from one hop before the first speech
//!    hop, moved earlier while another loud sample lies less than `edge_gap_ms` (50 ms) before
//!    it; the offset is one past the last loud sample of the last speech hop, moved later while
//!    another loud sample lies less than `edge_gap_ms` after it (50 ms spans the closure before
//!    a final plosive's release, as in "cold"). So a boundary is exact to the sample for a signal
//!    that starts or stops abruptly (a tone, a cut TTS buffer), and a decaying tail whose hop
//!    level already fell below `off_db` stays in the speech as long as its peaks reach it. The
//!    generator trims the user's phrases at the same level, so user and agent boundaries are
//!    measured alike.
//!
//! The levels are absolute (dBFS), because the agent's output is synthesized speech in digital
//! silence; a recording with a noise floor above -45 dBFS needs higher thresholds.

use serde::{Deserialize, Serialize};

/// The detector's settings (all documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    pub hop_ms: f64,
    pub on_db: f64,
    pub off_db: f64,
    pub min_silence_ms: f64,
    pub min_speech_ms: f64,
    /// Sample-level refinement follows loud samples less than this far apart (ms).
    pub edge_gap_ms: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            hop_ms: 10.0,
            on_db: -35.0,
            off_db: -45.0,
            min_silence_ms: 300.0,
            min_speech_ms: 60.0,
            edge_gap_ms: 50.0,
        }
    }
}

impl DetectorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.hop_ms > 0.0 && self.hop_ms <= 100.0) {
            return Err(format!("hop must be in (0, 100] ms, not {}", self.hop_ms));
        }
        if !(self.off_db <= self.on_db && self.on_db <= 0.0) {
            return Err(format!(
                "need off level <= on level <= 0 dBFS, not off {} / on {}",
                self.off_db, self.on_db
            ));
        }
        if !(self.min_silence_ms >= 0.0 && self.min_speech_ms >= 0.0) {
            return Err("minimum durations must be >= 0".into());
        }
        Ok(())
    }

    pub fn hop_samples(&self, sample_rate: u32) -> usize {
        ((self.hop_ms / 1000.0 * f64::from(sample_rate)).round() as usize).max(1)
    }
}

/// A stretch of detected speech, in samples [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub start: u64,
    pub end: u64,
}

fn db(level: f64) -> f64 {
    20.0 * level.max(1e-12).log10()
}

/// Detects speech in `samples` (mono, [-1, 1]).
pub fn detect_speech(samples: &[f32], sample_rate: u32, config: &DetectorConfig) -> Vec<Interval> {
    let hop = config.hop_samples(sample_rate);
    let levels: Vec<f64> = samples
        .chunks(hop)
        .map(|chunk| {
            let energy: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            db((energy / chunk.len() as f64).sqrt())
        })
        .collect();

    // Hop-level hysteresis.
    let mut hop_intervals: Vec<(usize, usize)> = Vec::new(); // [first hop, last hop + 1)
    let mut index = 0;
    while index < levels.len() {
        if levels[index] >= config.on_db {
            let mut first = index;
            while first > 0
                && levels[first - 1] >= config.off_db
                && hop_intervals.last().is_none_or(|&(_, end)| end < first)
            {
                first -= 1;
            }
            let mut end = index + 1;
            while end < levels.len() && levels[end] >= config.off_db {
                end += 1;
            }
            hop_intervals.push((first, end));
            index = end;
        } else {
            index += 1;
        }
    }

    let samples_of = |ms: f64| (ms / 1000.0 * f64::from(sample_rate)).round() as u64;
    let min_silence = samples_of(config.min_silence_ms);
    let min_speech = samples_of(config.min_speech_ms);
    let threshold = 10f64.powf(config.off_db / 20.0);
    let loud = |s: &f32| f64::from(s.abs()) >= threshold;
    let edge_gap = (samples_of(config.edge_gap_ms) as usize).max(1);

    // Refine each hop interval to the sample, following loud samples (at the off level) that
    // are less than one hop apart: a decaying tail whose hop RMS fell below the off level, but
    // whose peaks still reach it, stays in the interval.
    let mut intervals: Vec<Interval> = hop_intervals
        .into_iter()
        .map(|(first_hop, end_hop)| {
            let search_from = (first_hop * hop).saturating_sub(hop);
            let search_to = (end_hop * hop).min(samples.len());
            let mut start = samples[search_from..search_to]
                .iter()
                .position(loud)
                .map_or(first_hop * hop, |p| search_from + p);
            while let Some(p) = samples[start.saturating_sub(edge_gap)..start]
                .iter()
                .position(loud)
            {
                start = start.saturating_sub(edge_gap) + p;
            }
            let tail_from = ((end_hop - 1) * hop).max(start);
            let mut end = samples[tail_from..search_to]
                .iter()
                .rposition(loud)
                .map_or(search_to, |p| tail_from + p + 1);
            while let Some(p) = samples[end..(end + edge_gap).min(samples.len())]
                .iter()
                .rposition(loud)
            {
                end += p + 1;
            }
            Interval {
                start: start as u64,
                end: end.max(start + 1) as u64,
            }
        })
        .collect();

    // Bridge short gaps.
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for interval in intervals.drain(..) {
        match merged.last_mut() {
            Some(last) if interval.start < last.end + min_silence => {
                last.end = last.end.max(interval.end);
            }
            _ => merged.push(interval),
        }
    }
    merged.retain(|i| i.end - i.start >= min_speech);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    fn tone_into(signal: &mut [f32], start: usize, end: usize, amplitude: f32) {
        for (n, sample) in signal[start..end].iter_mut().enumerate() {
            // Cosine: the first sample is at full amplitude, so the onset is sharp.
            *sample =
                amplitude * (2.0 * std::f32::consts::PI * 220.0 * n as f32 / RATE as f32).cos();
        }
    }

    #[test]
    fn tone_boundaries_are_exact_to_the_sample() {
        let mut signal = vec![0.0f32; 5 * RATE as usize];
        // Deliberately not on hop boundaries.
        tone_into(&mut signal, 12_345, 40_007, 0.3);
        let found = detect_speech(&signal, RATE, &DetectorConfig::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start, 12_345);
        // The last loud sample of the cosine is at most a few samples before the cut.
        assert!((40_000..=40_007).contains(&found[0].end), "{:?}", found[0]);
    }

    #[test]
    fn short_gaps_are_bridged_and_clicks_dropped() {
        let mut signal = vec![0.0f32; 5 * RATE as usize];
        tone_into(&mut signal, 16_000, 20_000, 0.3);
        tone_into(&mut signal, 22_000, 30_000, 0.3); // 125 ms gap: bridged
        tone_into(&mut signal, 50_000, 50_480, 0.3); // 30 ms click: dropped
        tone_into(&mut signal, 60_000, 64_000, 0.3); // 1.25 s after: separate
        let found = detect_speech(&signal, RATE, &DetectorConfig::default());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].start, 16_000);
        assert!(found[0].end > 29_990 && found[0].end <= 30_000);
        assert_eq!(found[1].start, 60_000);
    }

    #[test]
    fn a_final_plosive_release_after_a_short_closure_stays_in_the_speech() {
        let mut signal = vec![0.0f32; 3 * RATE as usize];
        tone_into(&mut signal, 8_000, 16_000, 0.3);
        // 40 ms closure, then an 8 ms release burst at -40 dBFS (below the on level).
        tone_into(&mut signal, 16_640, 16_768, 0.014);
        let found = detect_speech(&signal, RATE, &DetectorConfig::default());
        assert_eq!(found.len(), 1);
        assert!((16_700..=16_768).contains(&found[0].end), "{found:?}");
        // With a 30 ms edge gap the burst is not reached.
        let strict = DetectorConfig {
            edge_gap_ms: 30.0,
            ..DetectorConfig::default()
        };
        let found = detect_speech(&signal, RATE, &strict);
        assert!(found[0].end <= 16_000, "{found:?}");
    }

    #[test]
    fn quiet_signal_is_not_speech_and_hysteresis_holds_a_fading_tail() {
        let mut signal = vec![0.0f32; 3 * RATE as usize];
        // -50 dBFS RMS: below the off level.
        tone_into(&mut signal, 0, 16_000, 0.0045);
        assert!(detect_speech(&signal, RATE, &DetectorConfig::default()).is_empty());
        // Loud, then a -40 dBFS tail (between on and off): the tail stays in the interval.
        tone_into(&mut signal, 16_000, 24_000, 0.3);
        tone_into(&mut signal, 24_000, 32_000, 0.014);
        let found = detect_speech(&signal, RATE, &DetectorConfig::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].end > 31_800, "{found:?}");
    }
}
