//! dMel: against the numpy reference on real speech, streaming equals offline, micro-turn
//! framing, configuration errors.

mod common;

use common::{max_abs_diff, random_splits, read_f32, reference, speech_sample, tmp_dir, write_f32};
use kernels::{
    DmelConfig, DmelFraming, DmelStream, KernelError, MelFilterbank, StreamingKernel, dmel,
};

fn run_stream(config: DmelConfig, signal: &[f32], split: &[usize]) -> (Vec<u8>, Vec<f32>) {
    let mut stream = DmelStream::new(config).expect("stream");
    let (mut levels, mut logmel) = (Vec::new(), Vec::new());
    let mut at = 0;
    for &n in split {
        stream
            .push_with_logmel(&signal[at..at + n], &mut |q, l| {
                levels.extend_from_slice(q);
                logmel.extend_from_slice(l);
            })
            .expect("push");
        at += n;
    }
    (levels, logmel)
}

#[test]
fn dmel_matches_numpy_on_speech() {
    let speech = speech_sample();
    for hop in [200usize, 160] {
        let config = DmelConfig {
            hop,
            ..DmelConfig::default()
        };
        let (levels, logmel) = run_stream(config, &speech, &[speech.len()]);
        let frames = speech.len() / hop;
        assert_eq!(levels.len(), frames * 80);

        let dir = tmp_dir();
        let input = dir.join(format!("dmel-{hop}-in.f32"));
        let out_logmel = dir.join(format!("dmel-{hop}-logmel.f32"));
        let out_levels = dir.join(format!("dmel-{hop}-levels.u8"));
        write_f32(&input, &speech);
        reference(&[
            "dmel",
            input.to_str().unwrap(),
            &hop.to_string(),
            out_logmel.to_str().unwrap(),
            out_levels.to_str().unwrap(),
        ]);
        let want_logmel = read_f32(&out_logmel);
        let want_levels = std::fs::read(&out_levels).expect("levels");
        assert_eq!(want_levels.len(), levels.len());

        // Clipped log10 mel: f32 against f64. Measured ~2e-5; allowed 1e-4.
        let (err, at) = max_abs_diff(&logmel, &want_logmel);
        eprintln!(
            "dMel hop {hop}: max |log10 mel rust - numpy| = {err:e} at frame {} mel {}",
            at / 80,
            at % 80
        );
        assert!(err <= 1e-4, "hop {hop}: log-mel error {err}");

        // Levels: equal on ≥ 99.9 % of cells, and never more than one level apart.
        let same = levels
            .iter()
            .zip(&want_levels)
            .filter(|(a, b)| a == b)
            .count();
        let agreement = same as f64 / levels.len() as f64;
        eprintln!(
            "dMel hop {hop}: level agreement {:.5} ({} of {})",
            agreement,
            same,
            levels.len()
        );
        assert!(agreement >= 0.999, "hop {hop}: agreement {agreement}");
        assert!(
            levels
                .iter()
                .zip(&want_levels)
                .all(|(a, b)| a.abs_diff(*b) <= 1)
        );

        // Real speech uses the range: silence at level 0, speech well above it.
        let used: std::collections::BTreeSet<u8> = levels.iter().copied().collect();
        assert!(used.len() >= 12, "only levels {used:?} used");
        assert!(levels.iter().all(|&l| l < 16));
    }
}

#[test]
fn dmel_filterbank_matches_numpy() {
    let fb = MelFilterbank::slaney(16_000.0, 513, 80, 80.0, 7600.0);
    let path = tmp_dir().join("dmel-fb.f32");
    reference(&[
        "filterbank",
        "16000",
        "1024",
        "80",
        "80",
        "7600",
        path.to_str().unwrap(),
    ]);
    let want = read_f32(&path);
    let (err, _) = max_abs_diff(&fb.dense(), &want);
    assert!(err <= 1e-9, "filterbank differs by {err}");
    let fb = MelFilterbank::slaney(16_000.0, 201, 80, 0.0, 8000.0);
    reference(&[
        "filterbank",
        "16000",
        "400",
        "80",
        "0",
        "8000",
        path.to_str().unwrap(),
    ]);
    let (err, _) = max_abs_diff(&fb.dense(), &read_f32(&path));
    assert!(err <= 1e-9, "whisper filterbank differs by {err}");
}

#[test]
fn dmel_stream_equals_offline_bit_exact() {
    let speech = &speech_sample()[..48_111];
    let (want_levels, want_logmel) = run_stream(DmelConfig::default(), speech, &[speech.len()]);
    assert_eq!(want_levels, dmel(speech).unwrap());
    let mut splits: Vec<(String, Vec<usize>)> = [1usize, 7, 160, 3200]
        .iter()
        .map(|&c| {
            (
                format!("chunks of {c}"),
                (0..speech.len())
                    .step_by(c)
                    .map(|s| c.min(speech.len() - s))
                    .collect(),
            )
        })
        .collect();
    for seed in 10..13 {
        splits.push((
            format!("random {seed}"),
            random_splits(speech.len(), 4000, seed),
        ));
    }
    for (name, split) in splits {
        let (levels, logmel) = run_stream(DmelConfig::default(), speech, &split);
        assert_eq!(levels, want_levels, "{name}");
        assert!(
            logmel
                .iter()
                .zip(&want_logmel)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: log-mel not bit-exact"
        );
    }
}

#[test]
fn a_micro_turn_holds_sixteen_frames() {
    let speech = speech_sample();
    let mut stream = DmelStream::new(DmelConfig::default()).unwrap();
    let mut out = Vec::new();
    for turn in speech.chunks_exact(3200).take(10) {
        out.clear();
        assert_eq!(stream.push_into(turn, &mut out).unwrap(), 16);
        assert_eq!(out.len(), 16 * 80);
    }
    // Step 10 ms: 20 frames per micro-turn.
    let mut stream = DmelStream::new(DmelConfig {
        hop: 160,
        ..DmelConfig::default()
    })
    .unwrap();
    assert_eq!(stream.push(&speech[..3200], &mut |_| {}).unwrap(), 20);
    // Level centres and dequantisation.
    let c = DmelConfig::default();
    assert_eq!(c.dequantize(0), -7.0);
    assert!((c.dequantize(15) - 2.0).abs() < 1e-6);
    assert!((c.level_step() - 0.6).abs() < 1e-6);
}

#[test]
fn dmel_bad_configs_and_input() {
    let bad = |c: DmelConfig| DmelStream::new(c).err().expect("should be refused");
    assert!(matches!(
        bad(DmelConfig {
            sample_rate: 48_000,
            ..Default::default()
        }),
        KernelError::SampleRate { got: 48_000, .. }
    ));
    assert!(matches!(
        bad(DmelConfig {
            hop: 0,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            hop: 801,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            window: 1100,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            fmax: 9000.0,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            fmin: f64::NAN,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            levels: 1,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            log_min: 3.0,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    assert!(matches!(
        bad(DmelConfig {
            n_mels: 0,
            ..Default::default()
        }),
        KernelError::Config(_)
    ));
    let msg = bad(DmelConfig {
        hop: 0,
        ..Default::default()
    })
    .to_string();
    assert!(msg.contains("hop 0"), "{msg}");
    // Window and FFT of other sizes are fine (the window centred, zero-padded).
    assert!(
        DmelStream::new(DmelConfig {
            n_fft: 2048,
            ..Default::default()
        })
        .is_ok()
    );

    let mut stream = DmelStream::new(DmelConfig::default()).unwrap();
    let mut reference = DmelStream::new(DmelConfig::default()).unwrap();
    let signal: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.01).sin() * 0.2).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    assert_eq!(stream.push_into(&[], &mut a).unwrap(), 0);
    let mut poisoned = signal[1000..2000].to_vec();
    poisoned[5] = f32::NAN;
    stream.push_into(&signal[..1000], &mut a).unwrap();
    assert!(matches!(
        stream.push_into(&poisoned, &mut a),
        Err(KernelError::NonFinite { index: 5, .. })
    ));
    poisoned[5] = f32::INFINITY;
    assert!(stream.push_into(&poisoned, &mut a).is_err());
    stream.push_into(&signal[1000..], &mut a).unwrap();
    reference.push_into(&signal, &mut b).unwrap();
    assert_eq!(a, b, "a rejected chunk leaves the stream unchanged");
    // Silence: every frame the same, at the bottom levels (apple/dmel floors |X| at 1e-5, so
    // the log-mel of silence sits a little above the -7 clip).
    let mut silent = Vec::new();
    DmelStream::new(DmelConfig::default())
        .unwrap()
        .push_into(&[0.0; 3200], &mut silent)
        .unwrap();
    assert_eq!(silent.len(), 16 * 80);
    assert!(silent.chunks(80).all(|f| f == &silent[..80]));
    assert!(silent.iter().all(|&l| l <= 1), "{:?}", &silent[..80]);
}

fn apple_reference(name: &str, speech: &[f32], hop: usize) -> (Vec<f32>, Vec<u8>) {
    let dir = tmp_dir();
    let input = dir.join(format!("{name}-in.f32"));
    let output = dir.join(format!("{name}-logmel.f32"));
    let levels = dir.join(format!("{name}-levels.u8"));
    write_f32(&input, speech);
    reference(&[
        "dmel-apple",
        input.to_str().unwrap(),
        &hop.to_string(),
        output.to_str().unwrap(),
        levels.to_str().unwrap(),
    ]);
    (read_f32(&output), std::fs::read(&levels).expect("levels"))
}

/// apple/dmel frames with `torch.stft(center=True)`: its frame t is our (causal) frame t + 1
/// (same samples, same window) wherever neither needs padding.
#[test]
fn dmel_frames_are_apple_frames_shifted_by_one() {
    let speech = speech_sample();
    let hop = 200;
    let (_, logmel) = run_stream(DmelConfig::default(), &speech, &[speech.len()]);
    let (apple, _) = apple_reference("dmel-apple-causal", &speech, hop);
    assert_eq!(
        apple.len(),
        (1 + speech.len() / hop) * 80,
        "torch.stft frame count"
    );
    let interior = 2..(speech.len() - 400) / hop;
    let ours: Vec<f32> = interior
        .clone()
        .flat_map(|t| logmel[(t + 1) * 80..(t + 2) * 80].to_vec())
        .collect();
    let theirs: Vec<f32> = interior
        .flat_map(|t| apple[t * 80..(t + 1) * 80].to_vec())
        .collect();
    let (err, _) = max_abs_diff(&ours, &theirs);
    eprintln!(
        "dMel vs apple centred frames (shifted by one): max error {err:e} over {} frames",
        ours.len() / 80
    );
    assert!(err <= 1e-4, "error {err}");
}

fn centred() -> DmelConfig {
    DmelConfig {
        framing: DmelFraming::Centered,
        ..DmelConfig::default()
    }
}

fn run_centred(signal: &[f32], split: &[usize]) -> (Vec<u8>, Vec<f32>) {
    let mut stream = DmelStream::new(centred()).expect("stream");
    let (mut levels, mut logmel) = (Vec::new(), Vec::new());
    let mut at = 0;
    let mut sink = |q: &[u8], l: &[f32]| {
        levels.extend_from_slice(q);
        logmel.extend_from_slice(l);
    };
    for &n in split {
        stream
            .push_with_logmel(&signal[at..at + n], &mut sink)
            .expect("push");
        at += n;
    }
    stream.finish_with_logmel(&mut sink);
    (levels, logmel)
}

/// Centred framing is apple/dmel's framing exactly, edges included.
#[test]
fn centred_dmel_matches_apple_framing_on_speech() {
    let speech = speech_sample();
    let (levels, logmel) = run_centred(&speech, &[speech.len()]);
    let (apple, apple_levels) = apple_reference("dmel-apple-centred", &speech, 200);
    assert_eq!(logmel.len(), apple.len(), "1 + n / hop frames");
    let (err, at) = max_abs_diff(&logmel, &apple);
    eprintln!(
        "centred dMel vs apple: max error {err:e} at frame {}",
        at / 80
    );
    assert!(err <= 1e-4, "error {err}");
    let same = levels
        .iter()
        .zip(&apple_levels)
        .filter(|(a, b)| a == b)
        .count();
    let agreement = same as f64 / levels.len() as f64;
    eprintln!("centred dMel vs apple: level agreement {agreement:.5}");
    assert!(agreement >= 0.999, "agreement {agreement}");
}

#[test]
fn centred_dmel_stream_equals_offline_bit_exact() {
    let speech = &speech_sample()[..30_123];
    let (want_levels, want_logmel) = run_centred(speech, &[speech.len()]);
    assert_eq!(want_levels.len(), (1 + speech.len() / 200) * 80);
    let mut splits: Vec<Vec<usize>> = [1usize, 7, 160, 3200]
        .iter()
        .map(|&c| {
            (0..speech.len())
                .step_by(c)
                .map(|s| c.min(speech.len() - s))
                .collect()
        })
        .collect();
    splits.push(random_splits(speech.len(), 4000, 21));
    for split in splits {
        let (levels, logmel) = run_centred(speech, &split);
        assert_eq!(levels, want_levels);
        assert!(
            logmel
                .iter()
                .zip(&want_logmel)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
    // Look-ahead: frame t needs sample 200 t + 399; the first needs 401 samples.
    let mut stream = DmelStream::new(centred()).unwrap();
    assert_eq!(stream.push(&speech[..400], &mut |_| {}).unwrap(), 0);
    assert_eq!(stream.push(&speech[400..401], &mut |_| {}).unwrap(), 1);
    assert_eq!(stream.push(&speech[401..600], &mut |_| {}).unwrap(), 1);
    // Causal streams have nothing left at finish.
    let mut causal = DmelStream::new(DmelConfig::default()).unwrap();
    causal.push(&speech[..1000], &mut |_| {}).unwrap();
    assert_eq!(causal.finish(&mut |_| {}), 0);
    // Centred framing needs hop < window / 2.
    assert!(matches!(
        DmelStream::new(DmelConfig {
            hop: 400,
            ..centred()
        }),
        Err(KernelError::Config(_))
    ));
}
