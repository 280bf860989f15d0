//! Criterion benchmarks: each audio front-end on one 200 ms micro-turn (3200 samples at 16 kHz,
//! steady state), the offline Whisper/Smart Turn windows, and the image front-ends on one
//! 640×480 frame. `examples/report.rs` prints the ratios to numpy and the FFT's FLOP rate.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kernels::{
    DmelConfig, DmelStream, EfficientNetInput, Patchify, RgbFrame, SileroFramer, WhisperLogMel,
    WhisperLogMelStream,
};

fn audio(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.031).sin() * 0.3 + ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05)
        .collect()
}

fn micro_turn(c: &mut Criterion) {
    let audio = audio(160_000);
    let turn = &audio[..3200];
    let mut group = c.benchmark_group("micro_turn_200ms");
    let mut whisper = WhisperLogMelStream::new(16_000).unwrap();
    whisper.push(&audio[..16_000], &mut |_| {}).unwrap();
    group.bench_function("whisper_log_mel_frames", |b| {
        b.iter(|| {
            whisper
                .push(black_box(turn), &mut |f| {
                    black_box(f);
                })
                .unwrap()
        })
    });
    let mut rows = WhisperLogMelStream::new(16_000).unwrap();
    rows.push(&audio[..16_000], &mut |_| {}).unwrap();
    group.bench_function("whisper_log_mel_rows", |b| {
        b.iter(|| {
            rows.push_rows(black_box(turn), &mut |r| {
                black_box(r);
            })
            .unwrap()
        })
    });
    let mut dmel = DmelStream::new(DmelConfig::default()).unwrap();
    group.bench_function("dmel", |b| {
        b.iter(|| {
            dmel.push(black_box(turn), &mut |f| {
                black_box(f);
            })
            .unwrap()
        })
    });
    let mut silero = SileroFramer::new(16_000).unwrap();
    group.bench_function("silero_framing", |b| {
        b.iter(|| {
            silero
                .push(black_box(turn), &mut |f| {
                    black_box(f);
                })
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("offline");
    group.sample_size(20);
    let mut offline = WhisperLogMel::new();
    let mut st = vec![0.0; 80 * 800];
    group.bench_function("smart_turn_8s", |b| {
        b.iter(|| offline.smart_turn_into(black_box(&audio), &mut st).unwrap())
    });
    let mut mel = vec![0.0; 80 * 3000];
    group.bench_function("whisper_30s", |b| {
        b.iter(|| {
            offline
                .compute_into(black_box(&audio), 3000, &mut mel)
                .unwrap()
        })
    });
    group.finish();
}

fn images(c: &mut Criterion) {
    let img: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let frame = RgbFrame::packed_rgb(&img, 640, 480);
    let mut group = c.benchmark_group("frame_640x480");
    let patchify = Patchify::default_40();
    let mut patches = vec![0.0; 192 * 4800];
    group.bench_function("patchify_40", |b| {
        b.iter(|| patchify.run(black_box(&frame), &mut patches).unwrap())
    });
    let mut effnet = EfficientNetInput::new();
    let mut input = vec![0.0; EfficientNetInput::OUTPUT_LEN];
    group.bench_function("efficientnet_input", |b| {
        b.iter(|| effnet.run(black_box(&frame), &mut input).unwrap())
    });
    group.finish();
}

criterion_group!(benches, micro_turn, images);
criterion_main!(benches);
