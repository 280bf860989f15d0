//! Benchmark of the visual observations (EfficientNet-Lite0 on the newest video frame):
//!
//! - the classifier alone (front end + model) on a 320 × 240 and a 640 × 480 frame;
//! - the cascade's step latency with 320 × 240 video in every micro-turn, vision on
//!   (`vision-interval-ms` 1000) and off, **live** (paced in real time; the classification runs
//!   on the worker thread and the step never waits) and **non-live** (the step that offers a
//!   frame waits for its classification).
//!
//! Run: `cargo bench -p gst-plugin-interaction --bench vision` (release build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use gstinteraction::conversation::{Action, Conversation, ConversationConfig};
use gstinteraction::device::{CPU_PROVIDER, Device, Provider};
use gstinteraction::engine::Engine;
use gstinteraction::loader::{LoadOptions, load_cascade};
use gstinteraction::policy::PolicyConfig;
use gstinteraction::stats::quantile;
use gstinteraction::vision::{self, Classifier, VisionConfig};
use interaction_protocol::packet::{Header, Packet, PacketWriter, packet_flags, video_flags};

const TURNS: usize = 50;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The test photo scaled (nearest neighbour) to `width` × `height`, packed RGB8.
fn photo(width: usize, height: usize) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/efficientnet/testdata/pcb.png");
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("the test photo"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut data = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut data).expect("PNG pixels");
    let (w, h) = (info.width as usize, info.height as usize);
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let at = ((y * h / height) * w + x * w / width) * 3;
            out.extend_from_slice(&data[at..at + 3]);
        }
    }
    out
}

fn packets(frame: &[u8], width: u32, height: u32) -> Vec<Packet> {
    let silence = vec![0.0f32; TURN_SAMPLES];
    (0..TURNS)
        .map(|k| {
            let header = Header {
                turn_index: k as u64,
                start: k as u64 * TURN_NS,
                duration: TURN_NS,
                audio_rate: RATE as u32,
                flags: if k == 0 { packet_flags::DISCONT } else { 0 },
                video_flags: video_flags::PRESENT,
                video_age: 0,
                samples_per_track: TURN_SAMPLES as u32,
            };
            let mut bytes = Vec::new();
            let mut writer = PacketWriter::begin(&mut bytes, &header);
            writer.audio_track("audio", 0, 0, &silence).unwrap();
            writer
                .video_frame(header.start, width, height, 0, frame)
                .unwrap();
            writer.finish();
            Packet::parse(&bytes).unwrap()
        })
        .collect()
}

fn main() {
    init();
    let package_dir = gstinteraction::package::source_packages_dir().join("cascade-default");
    let package = gstinteraction::package::load(&package_dir).expect("the default package");
    let provider = Provider {
        name: CPU_PROVIDER,
        device: Device::Cpu,
        fallback_reason: None,
    };
    let labels = vision::read_labels(package.file("vision-labels").unwrap()).unwrap();
    let opened = Instant::now();
    let mut classifier =
        Classifier::open(package.file("vision").unwrap(), labels, &provider).expect("model");
    println!(
        "EfficientNet-Lite0: opened (and run once) in {:.1} ms",
        ms(opened.elapsed().as_nanos() as u64)
    );
    println!("| frame | classifier p50 ms | min ms | top class |");
    println!("|---|---|---|---|");
    for (w, h) in [(320, 240), (640, 480)] {
        let frame = photo(w, h);
        let mut times: Vec<u64> = (0..21)
            .map(|_| {
                let t = Instant::now();
                classifier.classify(&frame, w, h, 3).expect("classify");
                t.elapsed().as_nanos() as u64
            })
            .collect();
        times.sort_unstable();
        let top = classifier.classify(&frame, w, h, 1).unwrap();
        println!(
            "| {w}x{h} | {:.1} | {:.1} | {} {:.2} |",
            ms(times[10]),
            ms(times[0]),
            top.classes[0].label,
            top.classes[0].probability
        );
    }

    let frame = photo(320, 240);
    let packets = packets(&frame, 320, 240);
    println!();
    println!(
        "cascade step latency, {TURNS} micro-turns of silence with a 320x240 frame each \
         (load average {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "| mode | vision | steps | p50 ms | p99 ms | max ms | observations | p50 ms of the steps that made one |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for live in [true, false] {
        for on in [false, true] {
            let options = LoadOptions {
                policy: PolicyConfig::default(),
                user_label: "user".into(),
                vision: on.then(VisionConfig::default),
            };
            let mut cascade = load_cascade(&package, &options, &provider).expect("models load");
            cascade.set_live(live);
            let mut conversation = Conversation::new(ConversationConfig::default());
            let mut actions = Vec::new();
            let mut times = Vec::new();
            let mut observed = 0;
            let mut observing = Vec::new();
            let origin = Instant::now();
            for (k, packet) in packets.iter().enumerate() {
                if live {
                    let due = Duration::from_nanos((k as u64 + 1) * TURN_NS);
                    if let Some(wait) = due.checked_sub(origin.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let now = packet.header.start + packet.header.duration;
                actions.clear();
                let started = Instant::now();
                cascade
                    .step(packet, now, &mut conversation, &mut actions)
                    .expect("step");
                let elapsed = started.elapsed().as_nanos() as u64;
                times.push(elapsed);
                let made = actions
                    .iter()
                    .filter(|a| matches!(a, Action::Message { name, .. } if *name == vision::OBSERVATION))
                    .count();
                if made > 0 {
                    observing.push(elapsed);
                }
                observed += made;
            }
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {observed} | {:.2} |",
                if live { "live" } else { "non-live" },
                if on { "on" } else { "off" },
                times.len(),
                ms(quantile(&times, 0.5)),
                ms(quantile(&times, 0.99)),
                ms(times.iter().copied().max().unwrap_or(0)),
                ms(quantile(&observing, 0.5)),
            );
        }
    }
}
