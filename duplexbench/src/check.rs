//! `duplexbench check`: does a user-segments JSON match its user WAV?
//!
//! For users who write the JSON for their own recordings. The scorer's detector runs on the
//! user WAV; every segment boundary should have a detected boundary near it, and no detected
//! speech should lie outside the segments. Differences are reported in milliseconds.

use serde::{Deserialize, Serialize};

use crate::audio::Mono;
use crate::detect::{DetectorConfig, detect_speech};
use crate::segments::UserSegments;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCheck {
    pub index: usize,
    pub text: String,
    /// Detected onset - JSON start, ms (nearest detected onset).
    pub onset_error_ms: Option<f64>,
    /// Detected offset - JSON end, ms (nearest detected offset).
    pub offset_error_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub segments: Vec<SegmentCheck>,
    /// Detected speech (start, end in seconds) that overlaps no segment.
    pub speech_outside_segments_s: Vec<(f64, f64)>,
    pub tolerance_ms: f64,
    pub ok: bool,
}

/// Checks `user` against the audio `wav`; `Err` when they cannot be compared.
pub fn check(
    user: &UserSegments,
    wav: &Mono,
    detector: &DetectorConfig,
    tolerance_ms: f64,
) -> Result<CheckReport, String> {
    if wav.sample_rate != user.sample_rate {
        return Err(format!(
            "the WAV is at {} Hz, the JSON counts samples at {} Hz",
            wav.sample_rate, user.sample_rate
        ));
    }
    if wav.samples.len() as u64 != user.num_samples {
        return Err(format!(
            "the WAV has {} samples, the JSON says num_samples {}",
            wav.samples.len(),
            user.num_samples
        ));
    }
    let found = detect_speech(&wav.samples, wav.sample_rate, detector);
    let ms = |samples: i64| samples as f64 * 1000.0 / f64::from(user.sample_rate);
    let nearest = |errors: Vec<i64>| errors.into_iter().min_by_key(|e| e.abs()).map(ms);
    let segments: Vec<SegmentCheck> = user
        .segments
        .iter()
        .enumerate()
        .map(|(index, segment)| SegmentCheck {
            index,
            text: segment.text.clone(),
            onset_error_ms: nearest(
                found
                    .iter()
                    .map(|i| i.start as i64 - segment.start as i64)
                    .collect(),
            ),
            offset_error_ms: nearest(
                found
                    .iter()
                    .map(|i| i.end as i64 - segment.end as i64)
                    .collect(),
            ),
        })
        .collect();
    let outside: Vec<(f64, f64)> = found
        .iter()
        .filter(|i| {
            !user
                .segments
                .iter()
                .any(|s| i.start < s.end && s.start < i.end)
        })
        .map(|i| (user.seconds(i.start), user.seconds(i.end)))
        .collect();
    let within = |error: Option<f64>| error.is_some_and(|e| e.abs() <= tolerance_ms);
    let ok = outside.is_empty()
        && segments
            .iter()
            .all(|s| within(s.onset_error_ms) && within(s.offset_error_ms));
    Ok(CheckReport {
        segments,
        speech_outside_segments_s: outside,
        tolerance_ms,
        ok,
    })
}

/// A readable report.
pub fn report_text(report: &CheckReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let show = |e: Option<f64>| e.map_or("none found".to_owned(), |e| format!("{e:+.1} ms"));
    for segment in &report.segments {
        let _ = writeln!(
            out,
            "segment {} {:?}: onset {}, offset {}",
            segment.index,
            segment.text,
            show(segment.onset_error_ms),
            show(segment.offset_error_ms)
        );
    }
    for (start, end) in &report.speech_outside_segments_s {
        let _ = writeln!(
            out,
            "speech outside every segment: {start:.3} s .. {end:.3} s"
        );
    }
    let _ = writeln!(
        out,
        "{} (tolerance {} ms)",
        if report.ok {
            "the segments match the audio"
        } else {
            "the segments do NOT match the audio"
        },
        report.tolerance_ms
    );
    out
}
