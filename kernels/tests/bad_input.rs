//! Bad input gets a clear error or a documented result, never a panic.

use kernels::{
    KernelError, SileroFramer, StreamingKernel, WhisperLogMel, WhisperLogMelStream,
    smart_turn_features, whisper_log_mel,
};

fn good(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.05).sin() * 0.3).collect()
}

#[test]
fn non_finite_samples_are_rejected_and_state_is_kept() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut signal = good(1000);
        signal[321] = bad;
        match whisper_log_mel(&signal, 10) {
            Err(KernelError::NonFinite { index: 321, .. }) => {}
            other => panic!("whisper_log_mel with {bad}: {other:?}"),
        }
        assert!(matches!(
            smart_turn_features(&signal),
            Err(KernelError::NonFinite { index: 321, .. })
        ));
        // Streams: the bad chunk is refused whole; the next good chunks continue as if it
        // had never been sent.
        let mut stream = WhisperLogMelStream::new(16_000).unwrap();
        let mut reference = WhisperLogMelStream::new(16_000).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        stream.push_into(&good(500), &mut a).unwrap();
        assert!(matches!(
            stream.push_into(&signal, &mut a),
            Err(KernelError::NonFinite { index: 321, .. })
        ));
        stream.push_into(&good(700)[500..], &mut a).unwrap();
        reference.push_into(&good(700), &mut b).unwrap();
        assert_eq!(a, b);
        let mut framer = SileroFramer::new(16_000).unwrap();
        let mut out = Vec::new();
        assert!(framer.push_into(&signal, &mut out).is_err());
        assert!(out.is_empty());
        let mut ring = kernels::SmartTurnWindow::new(16_000).unwrap();
        ring.push(&good(100)).unwrap();
        assert!(ring.push(&signal).is_err());
        assert_eq!(ring.held(), 100, "a rejected chunk is not kept");
    }
    // An error message says what is wrong.
    let msg = whisper_log_mel(&[0.0, f32::NAN], 4)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("sample 1") && msg.contains("NaN"), "{msg}");
    // Whisper trims to n_frames·160 first: a NaN beyond the window is not looked at.
    let mut long = good(2000);
    long[1900] = f32::NAN;
    assert!(whisper_log_mel(&long, 10).is_ok());
}

#[test]
fn empty_input_is_valid() {
    let mut stream = WhisperLogMelStream::new(16_000).unwrap();
    let mut out = Vec::new();
    assert_eq!(stream.push_into(&[], &mut out).unwrap(), 0);
    assert_eq!(stream.finish(&mut |_| panic!("no frames expected")), 0);
    let mut framer = SileroFramer::new(16_000).unwrap();
    assert_eq!(framer.push_into(&[], &mut out).unwrap(), 0);
    assert_eq!(framer.flush(&mut |_| panic!("no frames expected")), 0);
    assert!(out.is_empty());
    // Offline: empty audio is silence padded to the window: a constant (floored) output.
    let features = whisper_log_mel(&[], 100).unwrap();
    assert_eq!(features.len(), 8000);
    assert!(
        features.iter().all(|&v| v == features[0]),
        "silence gives a constant"
    );
    assert_eq!(features[0], (-10.0f32 + 4.0) / 4.0);
    let st = smart_turn_features(&[]).unwrap();
    assert!(st.iter().all(|v| v.is_finite()));
}

#[test]
fn wrong_sample_rate_and_sizes_are_errors() {
    for rate in [0, 8_000, 22_050, 44_100, 48_000] {
        assert!(matches!(
            WhisperLogMelStream::new(rate),
            Err(KernelError::SampleRate { got, .. }) if got == rate
        ));
    }
    assert!(SileroFramer::new(8_000).is_ok());
    assert!(matches!(
        SileroFramer::new(48_000),
        Err(KernelError::SampleRate { got: 48_000, .. })
    ));
    assert!(matches!(
        whisper_log_mel(&good(100), 0),
        Err(KernelError::Size { .. })
    ));
    let mut w = WhisperLogMel::new();
    let mut small = vec![0.0; 79];
    assert!(matches!(
        w.compute_into(&good(100), 1, &mut small),
        Err(KernelError::Size {
            expected: 80,
            got: 79,
            ..
        })
    ));
    assert!(matches!(
        w.smart_turn_into(&good(100), &mut small),
        Err(KernelError::Size {
            expected: 64_000,
            ..
        })
    ));
    // Absurdly loud samples (the f32 power would overflow) are refused; loud-but-sane ones
    // and tiny ones give finite features.
    let mut loud = vec![0.5f32; 4000];
    loud[7] = 3.0e38;
    assert!(matches!(
        whisper_log_mel(&loud, 20),
        Err(KernelError::OutOfRange { index: 7, .. })
    ));
    let loud = vec![1.0e9f32; 4000];
    assert!(
        whisper_log_mel(&loud, 20)
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );
    let quiet = vec![1e-30f32; 4000];
    assert!(
        whisper_log_mel(&quiet, 20)
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );
}
