//! Helpers shared by the integration tests: synthetic user sides and agent recordings.
#![allow(dead_code)]

use duplexbench::audio::Mono;
use duplexbench::score::DialogueInput;
use duplexbench::segments::{Item, SCHEMA, Segment, Task, UserSegments};

pub const RATE: u32 = 16_000;
/// The detector's hop at 16 kHz (10 ms): the stated accuracy bound for speech onsets.
pub const HOP: u64 = 160;

pub fn seconds(samples: u64) -> f64 {
    samples as f64 / f64::from(RATE)
}

pub fn user_side(num_samples: u64, segments: &[(u64, u64)], items: Vec<Item>) -> UserSegments {
    let user = UserSegments {
        schema: SCHEMA.into(),
        dialogue: "synthetic".into(),
        sample_rate: RATE,
        num_samples,
        seed: None,
        voice: None,
        segments: segments
            .iter()
            .map(|&(start, end)| Segment {
                start,
                end,
                text: String::new(),
            })
            .collect(),
        items,
    };
    user.validate().expect("valid synthetic user side");
    user
}

pub fn item(task: Task, start: u64, end: u64) -> Item {
    Item {
        task,
        start,
        end,
        window_end: None,
        expected_agent_onset: None,
        text: String::new(),
    }
}

/// Silence with 330 Hz cosine bursts at the given sample ranges (the cosine starts at full
/// amplitude, so each burst's first sample is loud and its onset sharp).
pub fn tones(total: u64, rate: u32, bursts: &[(u64, u64)]) -> Mono {
    let mut samples = vec![0.0f32; total as usize];
    for &(start, end) in bursts {
        for n in start..end {
            let t = (n - start) as f64 / f64::from(rate);
            samples[n as usize] = (0.3 * (2.0 * std::f64::consts::PI * 330.0 * t).cos()) as f32;
        }
    }
    Mono {
        samples,
        sample_rate: rate,
    }
}

pub fn input(user: UserSegments, agent: Mono) -> DialogueInput {
    DialogueInput {
        segments: user,
        agent,
        agent_source: "synthetic".into(),
        decisions: Vec::new(),
        words: None,
    }
}

/// The sample index one past the last sample of a 330 Hz burst [start, end) whose magnitude
/// reaches the detector's -45 dBFS level (what the detector must report as the offset).
pub fn last_loud_end(agent: &Mono, end: u64) -> u64 {
    let threshold = 10f32.powf(-45.0 / 20.0);
    let mut n = end;
    while n > 0 && agent.samples[(n - 1) as usize].abs() < threshold {
        n -= 1;
    }
    n
}

/// Times are compared to 1e-9 s: far below one sample (62.5 us at 16 kHz), above the rounding
/// of seconds = samples / rate arithmetic. "Exact" in these tests means exact to the sample.
#[track_caller]
pub fn assert_time(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a time");
    assert!(
        (actual - expected).abs() < 1e-9,
        "time {actual} != expected {expected}"
    );
}
