//! Runs the `pipelines/microturn-*.pipeline` files, as a user would, through
//! `gst::parse::launch`: 5 s of input gives exactly 25 packets at 200 ms.

use std::path::{Path, PathBuf};

use gst::prelude::*;
use interaction_protocol::packet::{Packet, audio_flags, text_flags, video_flags};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds the plugin through GST_PLUGIN_PATH (set by `make test`), else `target/debug`.
fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if std::env::var_os("GST_PLUGIN_PATH").is_none() {
            let dir = workspace().join("target/debug");
            // SAFETY: set once, before GStreamer starts and before any other thread reads it.
            unsafe { std::env::set_var("GST_PLUGIN_PATH", dir.canonicalize().unwrap_or(dir)) };
        }
        gst::init().unwrap();
        if gst::ElementFactory::find("microturnmux").is_none() {
            gstmicroturn::plugin_register_static().expect("register the microturn plugin");
        }
    });
}

fn pipeline_file(name: &str, overrides: &[(&str, &str)]) -> String {
    interaction_runtime::pipeline_file::load(workspace().join("pipelines").join(name), overrides)
        .unwrap()
}

/// Runs a description whose sink is `appsink name=out`, returns every packet and the
/// aligner's (`name=mux`) statistics.
fn run(description: &str) -> (Vec<(gst::Buffer, Packet)>, gst::Structure) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = named::<gst_app::AppSink>(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut packets = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer_owned().unwrap();
        let packet = Packet::parse(&buffer.map_readable().unwrap()).unwrap();
        packets.push((buffer, packet));
    }
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or an error");
    if let gst::MessageView::Error(error) = message.view() {
        panic!("{} ({:?})", error.error(), error.debug());
    }
    let stats = pipeline
        .by_name("mux")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    (packets, stats)
}

fn check_25_turns(packets: &[(gst::Buffer, Packet)], gaps_allowed: bool) {
    assert_eq!(packets.len(), 25, "5 s of input must give 25 packets");
    let first_pts = packets[0].0.pts().unwrap();
    for (k, (buffer, packet)) in packets.iter().enumerate() {
        assert_eq!(packet.header.turn_index, k as u64);
        assert_eq!(
            buffer.pts().unwrap(),
            first_pts + gst::ClockTime::from_mseconds(200 * k as u64)
        );
        assert_eq!(packet.header.duration, 200_000_000);
        assert_eq!(packet.audio.len(), 1);
        assert_eq!(packet.audio[0].samples.len(), 3200);
        if !gaps_allowed {
            assert_eq!(
                packet.audio[0].flags & audio_flags::GAP,
                0,
                "turn {k} has a gap"
            );
        }
    }
}

#[test]
fn live_pipeline_file_gives_25_packets_for_5_seconds() {
    init();
    let description = pipeline_file(
        "microturn-live.pipeline",
        &[
            (
                "AUDIO_SRC",
                "audiotestsrc is-live=true samplesperbuffer=160 num-buffers=500",
            ),
            ("SINK", "appsink name=out sync=false"),
        ],
    );
    let (packets, stats) = run(&description);
    // Live: a turn whose audio came later than its deadline (a loaded machine) is pushed on
    // time with silence and the gap flag; the audio that came late is then dropped. The count
    // and the timing of turns hold whatever happens, and no sample goes unaccounted.
    check_25_turns(&packets, true);
    let gap_samples: u64 = packets
        .iter()
        .map(|(_, p)| u64::from(p.audio[0].gap_samples))
        .sum();
    assert_eq!(stats.get::<u64>("gap-samples").unwrap(), gap_samples);
    assert_eq!(stats.get::<u64>("late-samples").unwrap(), gap_samples);
    assert!(
        gap_samples < 80_000 / 4,
        "{gap_samples} of 80000 samples missed their turn"
    );
    // A sine tone: every turn that got its audio carries signal.
    for (_, packet) in packets.iter().filter(|(_, p)| p.audio[0].gap_samples == 0) {
        let peak = packet.audio[0]
            .samples
            .iter()
            .fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.1, "turn {} is silent", packet.header.turn_index);
    }
}

/// Five seconds of real speech (espeak-ng), padded or cut to exactly 5 s at 16 kHz by sox.
fn speech_wav(dir: &Path) -> PathBuf {
    let raw = dir.join("speech-raw.wav");
    let wav = dir.join("speech.wav");
    let text = "Hello. This is a test of the micro turn aligner, cutting speech into turns.";
    test_audio::espeak(text, &[], &raw).unwrap();
    test_audio::to_16k(&raw, &wav, &["pad", "0", "5", "trim", "0", "5"]).unwrap();
    wav
}

#[test]
fn file_pipeline_gives_25_identical_packets_on_every_run() {
    init();
    let dir = std::env::temp_dir().join(format!("microturn-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = speech_wav(&dir);
    let description = pipeline_file(
        "microturn-file.pipeline",
        &[
            ("INPUT", wav.to_str().unwrap()),
            ("SINK", "appsink name=out sync=false"),
        ],
    );
    let (first, stats) = run(&description);
    check_25_turns(&first, false);
    assert_eq!(stats.get::<u64>("turns").unwrap(), 25);
    assert_eq!(first[0].0.pts(), Some(gst::ClockTime::ZERO));
    // Speech at the start, the padding silence at the end.
    let energy = |packet: &Packet| packet.audio[0].samples.iter().map(|s| s * s).sum::<f32>();
    assert!(energy(&first[2].1) > 1.0, "no speech in turn 2");
    assert!(energy(&first[24].1) < 1e-4, "{}", energy(&first[24].1));
    let (second, _) = run(&description);
    let bytes = |packets: &[(gst::Buffer, Packet)]| -> Vec<Vec<u8>> {
        packets
            .iter()
            .map(|(buffer, _)| buffer.map_readable().unwrap().to_vec())
            .collect()
    };
    assert_eq!(
        bytes(&first),
        bytes(&second),
        "non-live output must be bit-identical"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn av_pipeline_file_gives_frames_at_the_size_downstream_asks_for() {
    init();
    let description = pipeline_file(
        "microturn-av.pipeline",
        &[
            (
                "AUDIO_SRC",
                "audiotestsrc is-live=true samplesperbuffer=160 num-buffers=100",
            ),
            ("VIDEO_SRC", "videotestsrc is-live=true num-buffers=30"),
            ("SINK", "appsink name=out sync=false"),
        ],
    );
    let (packets, _) = run(&description);
    assert!(packets.len() >= 5, "{} packets", packets.len());
    let with_frames: Vec<&Packet> = packets
        .iter()
        .map(|(_, p)| p)
        .filter(|p| !p.video.is_empty())
        .collect();
    assert!(
        with_frames.len() >= 4,
        "{} turns with a frame",
        with_frames.len()
    );
    for packet in &with_frames {
        // Policy latest: one frame per turn, at the size the caps filter asked for.
        assert_eq!(packet.video.len(), 1);
        let frame = &packet.video[0];
        assert_eq!((frame.width, frame.height), (64, 48));
        assert_eq!(frame.data.len(), 64 * 48 * 3);
        assert_eq!(packet.header.video_flags & video_flags::STALE, 0);
        let start = packet.header.start;
        assert!(frame.timestamp >= start && frame.timestamp < start + packet.header.duration);
    }
}

/// The live pipeline file with an idle loop-back text input (as the reasoning sidecar is most
/// of the time) and an idle chat input: the aligner must wait for neither. Before loop-back buffers were diverted, the
/// base class waited for a buffer on every pad until each deadline, the audio queue filled up
/// to the `latency` property, and most of every turn was written as a hole.
#[test]
fn an_idle_loopback_text_pad_does_not_hold_the_audio_back() {
    let pipeline = live_pipeline_with_text(500, &["results", "chat"]);
    let mux = pipeline.by_name("mux").unwrap();
    mux.static_pad("text_0")
        .unwrap()
        .set_property("loopback", true);
    let results = named::<gst_app::AppSrc>(&pipeline, "results");
    let chat = named::<gst_app::AppSrc>(&pipeline, "chat");
    let sink = named::<gst_app::AppSink>(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut packets = Vec::new();
    let mut sent = false;
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer_owned().unwrap();
        let packet = Packet::parse(&buffer.map_readable().unwrap()).unwrap();
        // Half-way through, one result comes back (stamped with the pipeline's running time,
        // as the sidecar stamps its results).
        if packets.len() == 12 && !sent {
            let now = pipeline.current_running_time().unwrap();
            let mut item = gst::Buffer::from_slice(b"Paris.".to_vec());
            item.get_mut().unwrap().set_pts(now);
            results.push_buffer(item).unwrap();
            results.end_of_stream().unwrap();
            let mut line = gst::Buffer::from_slice(b"And Italy?".to_vec());
            line.get_mut().unwrap().set_pts(now);
            chat.push_buffer(line).unwrap();
            chat.end_of_stream().unwrap();
            sent = true;
        }
        packets.push((buffer, packet));
    }
    let stats = mux.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    check_25_turns(&packets, true);
    // At most the first turn waits for its deadline (the base class ignores the idle pad only
    // after one deadline has passed): everything after it arrives whole.
    let gap_samples = stats.get::<u64>("gap-samples").unwrap();
    assert!(
        gap_samples <= 3200,
        "{gap_samples} samples missed their turn: {stats}"
    );
    assert!(stats.get::<u64>("timed-out-turns").unwrap() <= 1, "{stats}");
    for (_, packet) in &packets[1..] {
        assert_eq!(
            packet.audio[0].gap_samples, 0,
            "turn {}",
            packet.header.turn_index
        );
    }
    let with_text: Vec<u64> = packets
        .iter()
        .filter(|(_, p)| p.text.iter().any(|t| t.text == "Paris."))
        .map(|(_, p)| p.header.turn_index)
        .collect();
    assert_eq!(with_text.len(), 1, "the result is in exactly one turn");
    assert!(
        (12..=15).contains(&with_text[0]),
        "result in turn {}",
        with_text[0]
    );
    let chat_items: Vec<(u64, u32)> = packets
        .iter()
        .flat_map(|(_, p)| {
            p.text
                .iter()
                .filter(|t| t.text == "And Italy?")
                .map(|t| (p.header.turn_index, t.flags))
        })
        .collect();
    assert_eq!(chat_items.len(), 1, "{chat_items:?}");
    assert!((12..=15).contains(&chat_items[0].0), "{chat_items:?}");
    assert_eq!(
        chat_items[0].1 & text_flags::LOOPBACK,
        0,
        "chat is not loop-back"
    );
}

/// Live audio that ends while a live chat input stays open (a user who has not closed the
/// chat). Live text is never waited for, so once the audio has ended nothing paces the turns:
/// before the end of the audio ended the stream, the aligner wrote empty turns as fast as
/// downstream took them until the chat ended (thousands of turns a second; in the embedding
/// example this raced the chat's EOS and sometimes never let it in).
#[test]
fn live_audio_ending_ends_the_stream_while_live_chat_stays_open() {
    let pipeline = live_pipeline_with_text(250, &["chat"]);
    let chat = named::<gst_app::AppSrc>(&pipeline, "chat");
    let sink = named::<gst_app::AppSink>(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = std::time::Instant::now();
    let mut turns = Vec::new();
    // 2.5 s of audio is 13 turns (the last one part silence); stop counting well past that,
    // or when no turn and no EOS come for 5 s.
    while turns.len() < 200 {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) else {
            break;
        };
        let buffer = sample.buffer_owned().unwrap();
        let packet = Packet::parse(&buffer.map_readable().unwrap()).unwrap();
        if turns.len() == 5 {
            let now = pipeline.current_running_time().unwrap();
            let mut line = gst::Buffer::from_slice(b"Still there?".to_vec());
            line.get_mut().unwrap().set_pts(now);
            chat.push_buffer(line).unwrap();
        }
        turns.push(packet);
    }
    let eos = sink.is_eos();
    let elapsed = started.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(eos, "no EOS after {} turns", turns.len());
    assert_eq!(turns.len(), 13, "2.5 s of audio in 200 ms turns");
    for (index, packet) in turns.iter().enumerate() {
        assert_eq!(packet.header.turn_index, index as u64);
    }
    let chat_turns: Vec<u64> = turns
        .iter()
        .filter(|p| p.text.iter().any(|t| t.text == "Still there?"))
        .map(|p| p.header.turn_index)
        .collect();
    assert_eq!(chat_turns.len(), 1, "the chat line is in one turn");
    assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
}

/// The live pipeline file with `buffers` buffers of 10 ms of live audio into `appsink name=out`,
/// and a live text `appsrc` per name, the `i`-th linked to `mux.text_i`.
fn live_pipeline_with_text(buffers: u32, texts: &[&str]) -> gst::Pipeline {
    init();
    let audio = format!("audiotestsrc is-live=true samplesperbuffer=160 num-buffers={buffers}");
    let mut description = pipeline_file(
        "microturn-live.pipeline",
        &[
            ("AUDIO_SRC", &audio),
            ("SINK", "appsink name=out sync=false"),
        ],
    );
    for (i, name) in texts.iter().enumerate() {
        description.push_str(&format!(
            " appsrc name={name} is-live=true format=time min-latency=0 \
             caps=text/x-raw,format=utf8 ! mux.text_{i}"
        ));
    }
    gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// The element called `name` in `pipeline`, as a `T`.
fn named<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> T {
    pipeline.by_name(name).unwrap().downcast::<T>().unwrap()
}
