//! Streaming equals offline, for every stateful kernel: chunks of 1, 7, 160 and 3200 samples
//! and random splits give the same frames as one whole push. These are bit-exact (the same
//! arithmetic on the same samples), so the tolerance is zero.

mod common;

use common::{Rng, random_splits, speech_sample};
use kernels::{
    KernelError, SileroFramer, SmartTurnWindow, StreamingKernel, WHISPER_HOP, WHISPER_N_MELS,
    WhisperLogMel, WhisperLogMelStream, smart_turn_features, whisper_normalize,
};

fn splits_for(len: usize) -> Vec<(String, Vec<usize>)> {
    let mut all: Vec<(String, Vec<usize>)> = [1usize, 7, 160, 3200]
        .iter()
        .map(|&c| {
            let mut v = vec![c; len / c];
            if !len.is_multiple_of(c) {
                v.push(len % c);
            }
            (format!("chunks of {c}"), v)
        })
        .collect();
    for seed in [1, 2, 3] {
        all.push((
            format!("random split {seed}"),
            random_splits(len, 5000, seed),
        ));
    }
    all
}

fn push_split<K: StreamingKernel<Item = f32>>(
    kernel: &mut K,
    signal: &[f32],
    split: &[usize],
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in split {
        kernel
            .push_into(&signal[at..at + n], &mut out)
            .expect("push");
        at += n;
    }
    assert_eq!(at, signal.len());
    out
}

/// A test signal: real speech with a little noise so no frame is silent.
fn signal() -> Vec<f32> {
    let mut rng = Rng(7);
    speech_sample()[..40_037]
        .iter()
        .map(|&s| s + 1e-3 * (rng.uniform() - 0.5))
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn whisper_stream_equals_offline_bit_exact() {
    let signal = signal();
    let n_frames = signal.len() / WHISPER_HOP;
    // Offline: finished features of the same samples (n_frames·160 of them).
    let mut offline = vec![0.0; WHISPER_N_MELS * n_frames];
    WhisperLogMel::new()
        .compute_into(&signal, n_frames, &mut offline)
        .expect("offline");
    let mut stream = WhisperLogMelStream::new(16_000).expect("stream");
    let used = &signal[..n_frames * WHISPER_HOP];
    for (name, split) in splits_for(used.len()) {
        let mut frames = push_split(&mut stream, used, &split);
        stream.finish(&mut |f| frames.extend_from_slice(f));
        assert_eq!(
            frames.len(),
            WHISPER_N_MELS * n_frames,
            "{name}: frame count"
        );
        // Frames come frame-major [t][80]; transpose, then finish the window.
        let mut features = vec![0.0; frames.len()];
        for (t, frame) in frames.chunks(WHISPER_N_MELS).enumerate() {
            for (m, &v) in frame.iter().enumerate() {
                features[m * n_frames + t] = v;
            }
        }
        whisper_normalize(&mut features);
        assert!(
            same_bits(&features, &offline),
            "{name}: streamed features differ from offline"
        );

        // Mel-major: push_rows / finish_rows blocks copied into a [80][frames] window with
        // MelRows::copy_to, with no transpose on either side.
        let mut window = vec![f32::NAN; WHISPER_N_MELS * n_frames];
        let mut column = 0;
        let mut put = |rows: kernels::MelRows<'_>| {
            assert!(
                (1..=24).contains(&rows.frames()),
                "{name}: block of {}",
                rows.frames()
            );
            assert_eq!(rows.n_mels(), WHISPER_N_MELS);
            rows.copy_to(&mut window, n_frames, column).expect("fits");
            column += rows.frames();
        };
        let mut at = 0;
        let mut pushed = 0;
        for &n in &split {
            pushed += stream.push_rows(&used[at..at + n], &mut put).expect("push");
            at += n;
        }
        pushed += stream.finish_rows(&mut put);
        assert_eq!(pushed, n_frames, "{name}: frame count returned");
        assert_eq!(column, n_frames, "{name}: frames in the blocks");
        whisper_normalize(&mut window);
        assert!(
            same_bits(&window, &offline),
            "{name}: mel-major streamed window differs from offline"
        );
    }
}

#[test]
fn whisper_rows_equal_frames_and_refuse_a_window_they_do_not_fit() {
    let signal = signal();
    let mut frames = WhisperLogMelStream::new(16_000).expect("stream");
    let mut rows = WhisperLogMelStream::new(16_000).expect("stream");
    for (i, turn) in signal.chunks(3200).take(5).enumerate() {
        let mut by_frame = Vec::new();
        let n = frames
            .push(turn, &mut |f| by_frame.extend_from_slice(f))
            .expect("push");
        let mut by_row = vec![0.0; by_frame.len()];
        let mut seen = 0;
        let mut blocks = 0;
        let m = rows
            .push_rows(turn, &mut |b| {
                for (mel, row) in b.rows().enumerate() {
                    for (f, &v) in row.iter().enumerate() {
                        by_row[(seen + f) * WHISPER_N_MELS + mel] = v;
                    }
                }
                assert_eq!(b.row(WHISPER_N_MELS), None);
                assert_eq!(
                    b.row(WHISPER_N_MELS - 1).map(<[f32]>::len),
                    Some(b.frames())
                );
                seen += b.frames();
                blocks += 1;
            })
            .expect("push");
        assert!(n > 0);
        assert_eq!(m, n);
        assert_eq!(seen, n);
        // In steady state a micro-turn is one block of 20 frames (a block holds up to 24).
        if i > 0 {
            assert_eq!((blocks, n), (1, 20), "turn {i}");
        }
        assert!(
            same_bits(&by_row, &by_frame),
            "turn {i}: rows differ from frames"
        );
    }
    // copy_to: a window of the wrong size, or columns the block does not fit, is an error
    // and leaves the window as it was.
    let mut checked = 0;
    rows.push_rows(&signal[16_000..19_200], &mut |b| {
        let mut window = vec![1.0; WHISPER_N_MELS * 30];
        let wrong = |r: Result<(), KernelError>| matches!(r, Err(KernelError::Size { .. }));
        assert!(wrong(b.copy_to(&mut window[1..], 30, 0)));
        assert!(wrong(b.copy_to(&mut window, 30, 31 - b.frames())));
        assert!(wrong(b.copy_to(&mut window, 30, usize::MAX)));
        assert!(wrong(b.copy_to(&mut window, usize::MAX, 0)));
        assert!(window.iter().all(|&v| v == 1.0));
        assert!(b.copy_to(&mut window, 30, 30 - b.frames()).is_ok());
        assert_eq!(window[29], b.row(0).unwrap()[b.frames() - 1]);
        checked += 1;
    })
    .expect("push");
    assert_eq!(checked, 1);
}

#[test]
fn whisper_stream_short_signals_and_latency() {
    let signal = signal();
    let mut stream = WhisperLogMelStream::new(16_000).expect("stream");
    // Nothing before 201 samples (reflect padding needs x[200]), then frame 0.
    let mut out = Vec::new();
    assert_eq!(stream.push_into(&signal[..200], &mut out).unwrap(), 0);
    assert_eq!(stream.push_into(&signal[200..201], &mut out).unwrap(), 1);
    // Frame t needs sample 160 t + 199.
    assert_eq!(stream.push_into(&signal[201..359], &mut out).unwrap(), 0);
    assert_eq!(stream.push_into(&signal[359..360], &mut out).unwrap(), 1);
    stream.reset();
    // Short signals (even shorter than the padding) still give n / 160 frames, and match offline
    // where offline sees the same samples (n a multiple of 160: no trim).
    for n in [0usize, 1, 159, 160, 199, 200, 201, 319, 320, 480, 481, 640] {
        let n_frames = n / WHISPER_HOP;
        let mut frames = Vec::new();
        stream.push_into(&signal[..n], &mut frames).unwrap();
        stream.finish(&mut |f| frames.extend_from_slice(f));
        assert_eq!(frames.len(), WHISPER_N_MELS * n_frames, "n = {n}");
        if n_frames == 0 || !n.is_multiple_of(WHISPER_HOP) {
            continue;
        }
        let mut offline = vec![0.0; WHISPER_N_MELS * n_frames];
        WhisperLogMel::new()
            .compute_into(&signal[..n], n_frames, &mut offline)
            .unwrap();
        let mut features = vec![0.0; frames.len()];
        for (t, frame) in frames.chunks(WHISPER_N_MELS).enumerate() {
            for (m, &v) in frame.iter().enumerate() {
                features[m * n_frames + t] = v;
            }
        }
        whisper_normalize(&mut features);
        assert_eq!(features, offline, "n = {n}");
    }
}

#[test]
fn silero_framer_gives_context_plus_frame_for_any_split() {
    let signal = signal();
    // Offline: 64 zeros, then the signal; frame t = padded[512 t .. 512 t + 576].
    let mut padded = vec![0.0; 64];
    padded.extend_from_slice(&signal);
    let n_frames = signal.len() / 512;
    let offline: Vec<f32> = (0..n_frames)
        .flat_map(|t| padded[512 * t..512 * t + 576].to_vec())
        .collect();
    let mut framer = SileroFramer::new(16_000).expect("framer");
    assert_eq!(framer.frame_len(), 576);
    for (name, split) in splits_for(signal.len()) {
        let frames = push_split(&mut framer, &signal, &split);
        assert_eq!(frames, offline, "{name}");
        // The tail: one zero-padded partial frame.
        let mut tail = Vec::new();
        assert_eq!(framer.flush(&mut |f| tail.extend_from_slice(f)), 1);
        let rest = &padded[512 * n_frames..];
        assert_eq!(&tail[..rest.len()], rest, "{name}: tail");
        assert!(tail[rest.len()..].iter().all(|&v| v == 0.0));
        assert_eq!(tail.len(), 576);
    }
    // 8 kHz: 256 + 32.
    let mut framer = SileroFramer::new(8_000).expect("framer");
    let mut out = Vec::new();
    assert_eq!(framer.push_into(&signal[..1024], &mut out).unwrap(), 4);
    assert_eq!(out.len(), 4 * 288);
    assert_eq!(&out[288..288 + 32], &signal[256 - 32..256]);
}

#[test]
fn smart_turn_window_equals_offline_on_what_was_pushed() {
    let speech = speech_sample();
    let mut long = speech.clone();
    long.extend_from_slice(&speech); // 15.9 s: the ring wraps
    let mut window = SmartTurnWindow::new(16_000).expect("window");
    let mut out = vec![0.0; 80 * 800];
    for (name, split) in [
        ("chunks of 3200", vec![3200; long.len() / 3200]),
        (
            "random split",
            random_splits(long.len() / 3200 * 3200, 40_000, 9),
        ),
    ] {
        window.reset();
        let mut at = 0;
        for (i, &n) in split.iter().enumerate() {
            window.push(&long[at..at + n]).unwrap();
            at += n;
            // Check now and then, and at the end: short (padded) and full (wrapped) windows.
            if i % 13 == 0 || i + 1 == split.len() {
                window.features_into(&mut out).unwrap();
                let want = smart_turn_features(&long[..at]).unwrap();
                assert_eq!(out, want, "{name}: after {at} samples");
                assert_eq!(window.held(), at.min(128_000));
            }
        }
    }
    // One push larger than the window keeps its tail.
    window.reset();
    window.push(&long).unwrap();
    window.features_into(&mut out).unwrap();
    assert_eq!(out, smart_turn_features(&long).unwrap());
    assert!(SmartTurnWindow::new(48_000).is_err());
}
