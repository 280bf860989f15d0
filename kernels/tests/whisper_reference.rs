//! Whisper log-mel and Smart Turn features against the independent numpy reference
//! (`reference/reference.py`, float64) on real speech from espeak-ng.

mod common;

use common::{max_abs_diff, read_f32, reference, speech_sample, tmp_dir, write_f32};
use kernels::{SMART_TURN_FRAMES, WHISPER_N_MELS, smart_turn_features, whisper_log_mel};

/// Largest difference allowed on the finished features ((log10 + 4) / 4 units): the Rust side
/// runs in f32, numpy in f64 (measured: 2.5e-5). 1e-4 is 4e-4 in log10 mel, 0.1 % in mel power.
const TOLERANCE: f32 = 1e-4;

fn numpy_whisper(name: &str, samples: &[f32], n_frames: usize) -> Vec<f32> {
    let dir = tmp_dir();
    let input = dir.join(format!("{name}-in.f32"));
    let output = dir.join(format!("{name}-numpy.f32"));
    write_f32(&input, samples);
    reference(&[
        "whisper",
        input.to_str().unwrap(),
        &n_frames.to_string(),
        output.to_str().unwrap(),
    ]);
    read_f32(&output)
}

#[test]
fn whisper_log_mel_matches_numpy_on_speech() {
    let speech = speech_sample();
    assert!(
        speech.len() > 5 * 16_000,
        "espeak-ng gave {} samples",
        speech.len()
    );
    // A 30 s window (padded) and a window shorter than the speech (trimmed).
    for (name, n_frames) in [("whisper-3000", 3000), ("whisper-250", 250)] {
        let ours = whisper_log_mel(&speech, n_frames).expect("features");
        let theirs = numpy_whisper(name, &speech, n_frames);
        assert_eq!(ours.len(), WHISPER_N_MELS * n_frames);
        assert_eq!(theirs.len(), ours.len());
        let (err, at) = max_abs_diff(&ours, &theirs);
        eprintln!(
            "{name}: max |rust - numpy| = {err:e} at mel {} frame {}",
            at / n_frames,
            at % n_frames
        );
        assert!(err <= TOLERANCE, "{name}: max error {err} > {TOLERANCE}");
        // The features carry the speech: a wide dynamic range, not a constant.
        let max = ours.iter().copied().fold(f32::MIN, f32::max);
        let min = ours.iter().copied().fold(f32::MAX, f32::min);
        assert!(
            (max - min - 2.0).abs() < 1e-4,
            "range {min}..{max} should span the 8-decade floor"
        );
    }
}

#[test]
fn smart_turn_features_match_numpy_on_speech() {
    let speech = speech_sample();
    // Shorter than 8 s (left-padded) and longer (the last 8 s are kept).
    let short = speech[..3 * 16_000].to_vec();
    let mut long = speech.clone();
    long.extend_from_slice(&speech);
    for (name, audio) in [("smart-short", &short), ("smart-long", &long)] {
        let dir = tmp_dir();
        let input = dir.join(format!("{name}-in.f32"));
        let output = dir.join(format!("{name}-numpy.f32"));
        write_f32(&input, audio);
        reference(&[
            "smart-turn",
            input.to_str().unwrap(),
            output.to_str().unwrap(),
        ]);
        let theirs = read_f32(&output);
        let ours = smart_turn_features(audio).expect("features");
        assert_eq!(ours.len(), WHISPER_N_MELS * SMART_TURN_FRAMES);
        let (err, at) = max_abs_diff(&ours, &theirs);
        eprintln!("{name}: max |rust - numpy| = {err:e} at index {at}");
        assert!(err <= TOLERANCE, "{name}: max error {err} > {TOLERANCE}");
    }
}
