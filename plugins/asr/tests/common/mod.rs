//! Real speech for the tests: espeak-ng (a separate process) through sox to 16 kHz mono, by
//! the workspace's `test-audio`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch folder for this test binary's files, under the target dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}

/// Speaks `text` with espeak-ng and writes it as a 16 kHz mono 16-bit WAV at `wav`.
pub fn espeak_wav(text: &str, wav: &Path) {
    let raw = wav.with_extension("espeak.wav");
    test_audio::espeak(text, &[], &raw).unwrap();
    test_audio::to_16k(&raw, wav, &[]).unwrap();
}

/// Speaks each text with the Piper voice (models/whisper/piper_speak.py, onnxruntime in the
/// venv, one process for all) and writes each as a 16 kHz mono 16-bit WAV.
pub fn piper_wavs(items: &[(&str, PathBuf)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/whisper/piper_speak.py");
    let mut command = Command::new(python());
    command.arg(script);
    for (text, wav) in items {
        command.arg(wav.with_extension("piper.wav")).arg(text);
    }
    test_audio::run(&mut command).unwrap();
    for (_, wav) in items {
        test_audio::to_16k(&wav.with_extension("piper.wav"), wav, &[]).unwrap();
    }
}

fn python() -> PathBuf {
    std::env::var("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| interaction_runtime::cache_root().join("venv/bin/python"))
}

/// The samples of a WAV as 16 kHz mono f32 (16-bit input gives exactly sample / 32768, the
/// same values numpy reads).
pub fn read_16k(wav: &Path) -> Vec<f32> {
    test_audio::read_16k(wav, &[]).unwrap()
}

/// The Python reference transcriber's tokens (models/whisper/transcribe.py) for each WAV.
pub fn python_reference_tokens(wavs: &[PathBuf]) -> Vec<Vec<u32>> {
    python_reference_tokens_with(wavs, &[])
}

/// As [`python_reference_tokens`], with more arguments for transcribe.py (`--int8`).
pub fn python_reference_tokens_with(wavs: &[PathBuf], extra: &[&str]) -> Vec<Vec<u32>> {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/whisper/transcribe.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(["--json", "--threads", "1"])
        .args(extra)
        .args(wavs)
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run {python:?} (run scripts/setup.sh to make the venv): {e}")
        });
    assert!(
        output.status.success(),
        "transcribe.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value["tokens"]
                .as_array()
                .expect("tokens")
                .iter()
                .map(|t| t.as_u64().expect("token id") as u32)
                .collect()
        })
        .collect()
}
