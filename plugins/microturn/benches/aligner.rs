//! Cost of the aligner per micro-turn and per input buffer, and allocations per turn.
//!
//! `cargo bench -p gst-plugin-microturn --bench aligner`
//!
//! Two parts, each against a baseline measured in the same process:
//! - the aligner core (`gstmicroturn::aligner`): 10 ms input buffers, 200 ms turns; baseline:
//!   the bare copy of a turn's samples into a byte vector (the least any serialiser does);
//! - the element through `gst_check::Harness` (non-live): the same audio through
//!   `microturnmux`; baseline: the same buffers through `identity`.
//!
//! Allocations are counted with a counting global allocator, so they are the Rust heap
//! allocations (GStreamer's own C allocations are not seen).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstmicroturn::aligner::Aligner;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RATE: u32 = 16_000;
const TURN: u64 = 200_000_000;
const BUFFER: u64 = 160;
const BUFFERS_PER_TURN: u64 = 20;
const SPT: u64 = 3200;

struct CoreResult {
    per_turn_write: Duration,
    per_buffer_push: Duration,
    allocations_per_turn: f64,
}

fn core(tracks: usize, turns: u64) -> CoreResult {
    let mut aligner = Aligner::<Vec<u8>>::new(TURN, RATE, 40_000_000).unwrap();
    for index in 0..tracks {
        let name = if index == 0 {
            "audio".to_owned()
        } else {
            format!("audio_{}", index - 1)
        };
        aligner.add_audio(&name);
    }
    let samples: Vec<f32> = (0..BUFFER).map(|n| (n as f32 * 0.01).sin()).collect();
    let mut run = |turns: u64, first_turn: u64| {
        let mut push_time = Duration::ZERO;
        let mut write_time = Duration::ZERO;
        for turn in first_turn..first_turn + turns {
            for index in 0..BUFFERS_PER_TURN {
                let sample = turn * SPT + index * BUFFER;
                let pts = sample * 1_000_000_000 / u64::from(RATE);
                let start = Instant::now();
                for track in 0..tracks {
                    aligner.audio[track].push(
                        Some(pts),
                        false,
                        samples.iter().copied(),
                        &mut aligner.stats,
                    );
                }
                push_time += start.elapsed();
            }
            let start = Instant::now();
            black_box(aligner.write_turn(false).unwrap());
            write_time += start.elapsed();
        }
        (push_time, write_time)
    };
    run(100, 0);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let (push_time, write_time) = run(turns, 100);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    CoreResult {
        per_turn_write: write_time / turns as u32,
        per_buffer_push: push_time / (turns * BUFFERS_PER_TURN) as u32,
        allocations_per_turn: allocations as f64 / turns as f64,
    }
}

/// The baseline: copying one turn of samples (per track) into a reused byte vector.
fn copy_baseline(tracks: usize, turns: u64) -> Duration {
    let samples: Vec<f32> = (0..SPT).map(|n| (n as f32 * 0.01).sin()).collect();
    let mut out = Vec::with_capacity(64 * 1024);
    let start = Instant::now();
    for _ in 0..turns {
        out.clear();
        for _ in 0..tracks {
            for sample in &samples {
                out.extend_from_slice(&sample.to_le_bytes());
            }
        }
        black_box(&out);
    }
    start.elapsed() / turns as u32
}

fn audio_buffer(start: u64) -> gst::Buffer {
    let mut data = Vec::with_capacity(BUFFER as usize * 4);
    for n in 0..BUFFER {
        data.extend_from_slice(&((n as f32) * 1e-3).to_le_bytes());
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gst::ClockTime::from_nseconds(
            start * 1_000_000_000 / u64::from(RATE),
        ));
        buffer.set_duration(gst::ClockTime::from_mseconds(10));
    }
    buffer
}

/// Pushes `turns` turns of 10 ms buffers through `element` and pulls what comes out.
/// Returns the time per turn and the Rust allocations per turn.
fn element(name: &str, turns: u64) -> (Duration, f64) {
    let element = gst::ElementFactory::make(name).build().unwrap();
    let sink = if name == "microturnmux" {
        "audio"
    } else {
        "sink"
    };
    let mut h = gst_check::Harness::with_element(&element, Some(sink), Some("src"));
    h.set_live(false);
    h.set_src_caps_str("audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
    let mut sample = 0;
    let mut push_turns = |h: &mut gst_check::Harness, turns: u64| {
        for _ in 0..turns {
            for _ in 0..BUFFERS_PER_TURN {
                h.push(audio_buffer(sample)).unwrap();
                sample += BUFFER;
                while let Some(buffer) = h.try_pull() {
                    black_box(buffer);
                }
            }
        }
    };
    push_turns(&mut h, 100);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    push_turns(&mut h, turns);
    let elapsed = start.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    (elapsed / turns as u32, allocations as f64 / turns as f64)
}

fn percent_of_a_core(cost: Duration) -> f64 {
    cost.as_secs_f64() / (TURN as f64 / 1e9) * 100.0
}

fn main() {
    println!("microturnmux benchmark: 200 ms turns, 16 kHz, 10 ms input buffers");
    for tracks in [1usize, 4] {
        let turns = 20_000;
        let result = core(tracks, turns);
        let baseline = copy_baseline(tracks, turns);
        let per_turn = result.per_turn_write + result.per_buffer_push * BUFFERS_PER_TURN as u32;
        println!(
            "core, {tracks} track(s): write {:?}/turn ({:.2}x the bare copy of {:?}), push {:?}/input buffer, \
             {:?}/turn in all = {:.4}% of one core; {} allocations/turn in steady state",
            result.per_turn_write,
            result.per_turn_write.as_secs_f64() / baseline.as_secs_f64(),
            baseline,
            result.per_buffer_push,
            per_turn,
            percent_of_a_core(per_turn),
            result.allocations_per_turn,
        );
    }

    gst::init().unwrap();
    gstmicroturn::plugin_register_static().unwrap();
    let turns = 3_000;
    let (identity, identity_allocations) = element("identity", turns);
    let (mux, mux_allocations) = element("microturnmux", turns);
    let added = mux.saturating_sub(identity);
    println!(
        "element, 1 track: {:?}/turn through microturnmux against {:?}/turn through identity \
         (same 20 buffers; {:.2}x); the aligner adds {:?}/turn = {:?}/input buffer = {:.4}% of \
         one core; Rust allocations/turn: {:.1} (identity: {:.1}, the harness's buffer \
         creation included)",
        mux,
        identity,
        mux.as_secs_f64() / identity.as_secs_f64(),
        added,
        added / BUFFERS_PER_TURN as u32,
        percent_of_a_core(added),
        mux_allocations,
        identity_allocations,
    );
}
