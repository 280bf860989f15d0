//! No heap allocation per call in steady state, counted by a global allocator.
//!
//! The counter is per thread, so the test harness's own threads do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kernels::{
    DmelConfig, DmelFraming, DmelStream, EfficientNetInput, Patchify, RgbFrame, SileroFramer,
    SmartTurnWindow, StreamingKernel, WhisperLogMel, WhisperLogMelStream,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.031).sin() + (i as f32 * 0.0071).cos()) * 0.2)
        .collect()
}

#[test]
fn the_counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn audio_kernels_do_not_allocate_per_call() {
    let audio = signal(200_000);
    let mut sink_total = 0.0f32;

    // Streams: allocation-free from the first push on, whatever the chunk size.
    let mut whisper = WhisperLogMelStream::new(16_000).unwrap();
    let mut whisper_rows = WhisperLogMelStream::new(16_000).unwrap();
    let mut dmel = DmelStream::new(DmelConfig::default()).unwrap();
    let mut silero = SileroFramer::new(16_000).unwrap();
    let mut centred = DmelStream::new(DmelConfig {
        framing: DmelFraming::Centered,
        ..DmelConfig::default()
    })
    .unwrap();
    let n = allocations(|| {
        for chunk in [1usize, 7, 160, 3200, 4999] {
            for piece in audio[..40_000].chunks(chunk) {
                whisper.push(piece, &mut |f| sink_total += f[0]).unwrap();
                whisper_rows
                    .push_rows(piece, &mut |b| sink_total += b.row(0).unwrap()[0])
                    .unwrap();
                dmel.push(piece, &mut |f| sink_total += f32::from(f[0]))
                    .unwrap();
                silero.push(piece, &mut |f| sink_total += f[0]).unwrap();
                centred
                    .push(piece, &mut |f| sink_total += f32::from(f[0]))
                    .unwrap();
            }
        }
        centred.finish(&mut |f| sink_total += f32::from(f[0]));
        whisper.finish(&mut |f| sink_total += f[0]);
        whisper_rows.finish_rows(&mut |b| sink_total += b.row(0).unwrap()[0]);
        silero.flush(&mut |f| sink_total += f[0]);
        dmel.reset();
        // Rejected input does not allocate either (the error carries no heap data).
        assert!(dmel.push(&[f32::NAN], &mut |_| {}).is_err());
    });
    assert_eq!(n, 0, "streaming kernels allocated {n} times");

    // push_into a Vec with capacity.
    let mut out: Vec<u8> = Vec::with_capacity(16 * 80);
    let n = allocations(|| {
        for turn in audio.chunks_exact(3200).take(20) {
            out.clear();
            dmel.push_into(turn, &mut out).unwrap();
        }
    });
    assert_eq!(n, 0, "push_into allocated {n} times");

    // Offline Whisper / Smart Turn: the first call sizes the buffers, later calls reuse them.
    let mut offline = WhisperLogMel::new();
    let mut mel = vec![0.0; 80 * 3000];
    let mut st = vec![0.0; 80 * 800];
    offline.compute_into(&audio, 3000, &mut mel).unwrap();
    offline.smart_turn_into(&audio, &mut st).unwrap();
    let n = allocations(|| {
        for _ in 0..3 {
            offline.compute_into(&audio, 3000, &mut mel).unwrap();
            offline.smart_turn_into(&audio[..50_000], &mut st).unwrap();
        }
    });
    assert_eq!(n, 0, "offline Whisper allocated {n} times");

    // The Smart Turn ring: pushes never allocate; features after the first call do not.
    let mut ring = SmartTurnWindow::new(16_000).unwrap();
    ring.push(&audio[..1000]).unwrap();
    ring.features_into(&mut st).unwrap();
    let n = allocations(|| {
        for turn in audio.chunks(3200).take(60) {
            ring.push(turn).unwrap();
        }
        assert!(ring.push(&[f32::INFINITY]).is_err());
        ring.features_into(&mut st).unwrap();
    });
    assert_eq!(n, 0, "Smart Turn window allocated {n} times");
    assert!(sink_total.is_finite());
}

#[test]
fn image_kernels_do_not_allocate_per_call() {
    let img: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let frame = RgbFrame::packed_rgb(&img, 640, 480);
    let patchify = Patchify::default_40();
    let mut patches = vec![0.0; 192 * 4800];
    let mut effnet = EfficientNetInput::new();
    let mut input = vec![0.0; EfficientNetInput::OUTPUT_LEN];
    effnet.run(&frame, &mut input).unwrap(); // builds the tables for 640×480
    let n = allocations(|| {
        for _ in 0..3 {
            patchify.run(&frame, &mut patches).unwrap();
            effnet.run(&frame, &mut input).unwrap();
        }
    });
    assert_eq!(n, 0, "image kernels allocated {n} times");
}
