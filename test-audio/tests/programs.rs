//! espeak-ng and sox themselves: what every crate's speech tests stand on.

use std::path::{Path, PathBuf};

use test_audio::{espeak, read_16k, to_16k};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

#[test]
fn speech_converts_pads_and_reads_back_the_same_samples_every_time() {
    let dir = scratch("speech");
    let raw = dir.join("hello.espeak.wav");
    espeak("Hello there.", &[], &raw).unwrap();
    let wav = dir.join("hello.wav");
    to_16k(&raw, &wav, &["pad", "0.5", "0.25"]).unwrap();
    let padded = read_16k(&wav, &[]).unwrap();
    let speech = read_16k(&raw, &[]).unwrap();
    // Half a second of zeros, the speech, a quarter of a second of zeros: to the sample.
    assert_eq!(padded.len(), speech.len() + 8_000 + 4_000);
    assert!(padded[..8_000].iter().all(|&s| s == 0.0));
    assert!(padded[padded.len() - 4_000..].iter().all(|&s| s == 0.0));
    assert_eq!(&padded[8_000..8_000 + speech.len()], &speech[..]);
    // The same effect applied while reading gives the same samples.
    assert_eq!(read_16k(&raw, &["pad", "0.5", "0.25"]).unwrap(), padded);
    // Without dither, a second conversion gives the same samples.
    assert_eq!(read_16k(&raw, &[]).unwrap(), speech);
    let peak = speech.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.1, "espeak-ng spoke (peak {peak})");
    // About a second of speech at 16 kHz.
    assert!((8_000..48_000).contains(&speech.len()), "{}", speech.len());
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = read_16k(Path::new("/nonexistent/speech.wav"), &[]).unwrap_err();
    assert!(err.contains("sox") && err.contains("failed"), "{err}");
}
