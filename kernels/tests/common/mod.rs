//! Helpers shared by the integration tests: real speech from espeak-ng, and the numpy
//! reference script run with the project's Python environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where test files go (cargo's per-target temporary folder).
pub fn tmp_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernels-tests");
    std::fs::create_dir_all(&dir).expect("create test temp dir");
    dir
}

/// `text` spoken by espeak-ng, resampled by sox to 16 kHz mono f32. Cached per name.
pub fn speech(name: &str, text: &str) -> Vec<f32> {
    let dir = tmp_dir();
    let raw = dir.join(format!("{name}.f32"));
    if !raw.exists() {
        // Unique temporaries: tests run in parallel threads and processes.
        let unique = format!("{}-{:?}", std::process::id(), std::thread::current().id());
        let unique: String = unique
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let wav = dir.join(format!("{name}.{unique}.wav"));
        test_audio::espeak(text, &[], &wav).unwrap();
        let part = dir.join(format!("{name}.{unique}.part"));
        // 32-bit float, not `test_audio::to_16k`'s 16 bits: no rounding to 16 bits (and so no
        // dither) before the numpy reference check.
        test_audio::run(
            Command::new("sox")
                .arg(&wav)
                .args([
                    "-r", "16000", "-c", "1", "-e", "float", "-b", "32", "-t", "raw",
                ])
                .arg(&part),
        )
        .unwrap();
        std::fs::rename(&part, &raw).expect("rename speech file");
        let _ = std::fs::remove_file(&wav);
    }
    read_f32(&raw)
}

/// A few seconds of varied real speech.
pub fn speech_sample() -> Vec<f32> {
    speech(
        "speech-a",
        "Hello there. The quick brown fox jumps over the lazy dog. How are you doing today? \
         I would like two tickets to Berlin, please.",
    )
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The project's Python (numpy): `$GST_INTERACTION_CACHE/venv/bin/python`, else
/// `$XDG_CACHE_HOME/gst-interaction/venv/bin/python`, else `~/.cache/gst-interaction/...`.
pub fn python() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let cache = non_empty("GST_INTERACTION_CACHE")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("gst-interaction")))
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache/gst-interaction")))
        .expect("no GST_INTERACTION_CACHE, XDG_CACHE_HOME or HOME");
    let py = cache.join("venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `make setup` (it creates the venv with numpy)",
        py.display()
    );
    py
}

/// Runs `reference/reference.py` with `args`.
pub fn reference(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/reference.py");
    test_audio::run(Command::new(python()).arg(script).args(args)).unwrap();
}

/// Largest absolute difference, and where.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut worst = (0.0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs();
        if d > worst.0 || d.is_nan() {
            worst = (d, i);
        }
    }
    worst
}

/// A small deterministic generator (xorshift) for random splits and noise.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Random chunk lengths (1..=max) covering `len` samples.
pub fn random_splits(len: usize, max: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = (1 + rng.below(max)).min(left);
        out.push(n);
        left -= n;
    }
    out
}
