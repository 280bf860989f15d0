//! `microturnmux` through `gst_check::Harness` (non-live, and live under a test clock).

use gst::prelude::*;
use gst_check::Harness;
use interaction_protocol::packet::{
    self, Packet, audio_flags, packet_flags, text_flags, video_flags,
};

const RATE: u64 = 16_000;
const TURN: u64 = 200_000_000;
const SPT: u64 = 3200;
const F32_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";
const S16_CAPS: &str = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";

fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstmicroturn::plugin_register_static().expect("register the microturn plugin");
    });
}

fn mux() -> gst::Element {
    init();
    gst::ElementFactory::make("microturnmux").build().unwrap()
}

fn value(n: u64) -> f32 {
    (n % 8192) as f32 / 8192.0
}

fn pts_of(sample: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(sample * 1_000_000_000 / RATE)
}

fn f32_buffer(start: u64, count: u64) -> gst::Buffer {
    let mut data = Vec::with_capacity(count as usize * 4);
    for n in start..start + count {
        data.extend_from_slice(&value(n).to_le_bytes());
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(pts_of(start));
        buffer.set_duration(pts_of(start + count) - pts_of(start));
    }
    buffer
}

fn s16_buffer(start: u64, count: u64) -> gst::Buffer {
    let mut data = Vec::with_capacity(count as usize * 2);
    for n in start..start + count {
        data.extend_from_slice(&((n % 8192) as i16 * 4).to_le_bytes());
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(pts_of(start));
    }
    buffer
}

fn text_buffer(text: &str, pts_ms: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(text.as_bytes().to_vec());
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    buffer
}

fn rgb_frame(shade: u8, pts_ms: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![shade; 4 * 2 * 3]);
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    buffer
}

fn parse(buffer: &gst::Buffer) -> Packet {
    let map = buffer.map_readable().unwrap();
    Packet::parse(&map).unwrap()
}

/// Every packet until EOS.
fn drain(h: &mut Harness) -> Vec<(gst::Buffer, Packet)> {
    let mut out = Vec::new();
    while let Some(buffer) = h.pull_until_eos().unwrap() {
        let packet = parse(&buffer);
        out.push((buffer, packet));
    }
    out
}

fn audio_harness(mux: &gst::Element, caps: &str) -> Harness {
    let mut h = Harness::with_element(mux, Some("audio"), Some("src"));
    h.set_live(false);
    h.set_src_caps_str(caps);
    h
}

/// Checks one turn: index, PTS, duration, clean audio with the right values.
fn check_clean_turn(k: u64, buffer: &gst::Buffer, packet: &Packet, value_of: &impl Fn(u64) -> f32) {
    assert_eq!(packet.header.turn_index, k);
    assert_eq!(buffer.pts(), Some(gst::ClockTime::from_nseconds(k * TURN)));
    assert_eq!(buffer.duration(), Some(gst::ClockTime::from_nseconds(TURN)));
    assert_eq!(packet.header.start, k * TURN);
    let track = &packet.audio[0];
    assert_eq!((track.flags, track.gap_samples), (0, 0), "turn {k} flagged");
    assert_eq!(track.samples.len() as u64, SPT);
    for (j, sample) in track.samples.iter().enumerate() {
        let n = k * SPT + j as u64;
        assert_eq!(
            *sample,
            value_of(n),
            "turn {k} sample {j}: audio lost or duplicated"
        );
    }
}

fn check_clean_turns(packets: &[(gst::Buffer, Packet)], value_of: impl Fn(u64) -> f32) {
    for (k, (buffer, packet)) in packets.iter().enumerate() {
        check_clean_turn(k as u64, buffer, packet, &value_of);
    }
}

/// Pushes `total` samples in buffers of the sizes `size()` gives, then EOS, checking every
/// packet as it comes (so that memory stays flat over an hour). Returns the packets that
/// were not clean whole turns (the partial last one) and the number of clean ones.
fn push_and_check(
    h: &mut Harness,
    total: u64,
    mut size: impl FnMut() -> u64,
) -> (u64, Vec<Packet>) {
    let whole_turns = total / SPT;
    let mut checked = 0u64;
    let mut rest = Vec::new();
    let take = |buffer: gst::Buffer, checked: &mut u64, rest: &mut Vec<Packet>| {
        let packet = parse(&buffer);
        if *checked < whole_turns {
            check_clean_turn(*checked, &buffer, &packet, &value);
            *checked += 1;
        } else {
            rest.push(packet);
        }
    };
    let mut pushed = 0;
    while pushed < total {
        let count = size().min(total - pushed);
        h.push(f32_buffer(pushed, count)).unwrap();
        pushed += count;
        while let Some(buffer) = h.try_pull() {
            take(buffer, &mut checked, &mut rest);
        }
    }
    h.push_event(gst::event::Eos::new());
    while let Some(buffer) = h.pull_until_eos().unwrap() {
        take(buffer, &mut checked, &mut rest);
    }
    (checked, rest)
}

fn push_audio(h: &mut Harness, total: u64, mut size: impl FnMut() -> u64) {
    let mut pushed = 0;
    while pushed < total {
        let count = size().min(total - pushed);
        h.push(f32_buffer(pushed, count)).unwrap();
        pushed += count;
    }
}

#[test]
fn sample_accounting_10ms_buffers() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    // One hour in 10 ms buffers.
    let (clean, rest) = push_and_check(&mut h, 3600 * RATE, || 160);
    assert_eq!(clean, 18_000);
    assert!(rest.is_empty());
    let stats = mux.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("turns").unwrap(), 18_000);
    assert_eq!(stats.get::<u64>("gap-samples").unwrap(), 0);
    assert_eq!(stats.get::<u64>("late-samples").unwrap(), 0);
}

#[test]
fn sample_accounting_1s_and_random_buffers() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    let (clean, rest) = push_and_check(&mut h, 3600 * RATE, || RATE);
    assert_eq!(clean, 18_000);
    assert!(rest.is_empty());

    let mux = self::mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let (clean, rest) = push_and_check(&mut h, 3600 * RATE + 1234, || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        1 + state % 6000
    });
    // 18000 whole turns plus a last one of 1234 samples, flagged partial.
    assert_eq!(clean, 18_000);
    assert_eq!(rest.len(), 1);
    let last = &rest[0].audio[0];
    assert_eq!(rest[0].header.turn_index, 18_000);
    assert_eq!(last.flags, audio_flags::GAP | audio_flags::PARTIAL);
    assert_eq!(last.gap_samples as u64, SPT - 1234);
    assert_eq!(last.samples[1233], value(18_000 * SPT + 1233));
}

#[test]
fn first_turn_is_flagged_discont() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    h.push(f32_buffer(0, 2 * SPT)).unwrap();
    h.push_event(gst::event::Eos::new());
    let packets = drain(&mut h);
    assert_eq!(packets.len(), 2);
    check_clean_turns(&packets, value);
    assert_eq!(packets[0].1.header.flags, packet_flags::DISCONT);
    assert!(packets[0].0.flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(packets[1].1.header.flags, 0);
}

#[test]
fn s16_input_is_converted() {
    let mux = mux();
    let mut h = audio_harness(&mux, S16_CAPS);
    h.push(s16_buffer(0, 3 * SPT)).unwrap();
    h.push_event(gst::event::Eos::new());
    let packets = drain(&mut h);
    assert_eq!(packets.len(), 3);
    check_clean_turns(&packets, |n| ((n % 8192) as i16 * 4) as f32 / 32768.0);
}

#[test]
fn non_live_output_is_bit_identical_across_runs() {
    let run = || {
        let mux = mux();
        let mut h = audio_harness(&mux, F32_CAPS);
        let mut text = Harness::with_element(&mux, Some("text_0"), None);
        text.set_live(false);
        text.set_src_caps_str("text/x-raw,format=utf8");
        // A non-live aggregator pad holds one buffer: order the pushes so that none waits
        // for a later one.
        text.push(text_buffer("hello", 450)).unwrap();
        text.push_event(gst::event::Eos::new());
        let mut sizes = 7u64;
        push_audio(&mut h, 3 * RATE, || {
            sizes = sizes
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (sizes >> 33) % 3000
        });
        h.push_event(gst::event::Eos::new());
        drain(&mut h)
            .into_iter()
            .map(|(buffer, _)| buffer.map_readable().unwrap().to_vec())
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first.len(), 15);
    assert_eq!(first, run());
}

#[test]
fn discont_and_timestamp_gap_become_flagged_silence() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    h.push(f32_buffer(0, 8000)).unwrap();
    // 300 ms hole, no flag.
    h.push(f32_buffer(12_800, 3200)).unwrap();
    // A flagged discontinuity 100 ms later.
    let mut late = f32_buffer(17_600, 3200);
    late.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
    h.push(late).unwrap();
    h.push_event(gst::event::Eos::new());
    let packets = drain(&mut h);
    let tracks: Vec<_> = packets.iter().map(|(_, p)| p.audio[0].clone()).collect();
    assert_eq!(tracks.len(), 7);
    assert_eq!(tracks[2].gap_samples, 1600);
    assert_eq!(tracks[2].flags, audio_flags::GAP);
    assert_eq!(tracks[3].gap_samples, 3200);
    assert_eq!(tracks[4].flags, audio_flags::DISCONT);
    assert_eq!(tracks[4].samples[0], value(12_800));
    // 16000..17600 silent, then the discont buffer at its own timestamp.
    assert_eq!(tracks[5].gap_samples, 1600);
    assert_eq!(tracks[5].flags, audio_flags::GAP | audio_flags::DISCONT);
    assert_eq!(tracks[5].samples[1600], value(17_600));
    assert_eq!(tracks[6].samples[1599], value(20_799));
    assert_eq!(tracks[6].flags, audio_flags::GAP | audio_flags::PARTIAL);
}

#[test]
fn gap_event_becomes_flagged_silence() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    h.push(f32_buffer(0, 1600)).unwrap();
    h.push_event(
        gst::event::Gap::builder(pts_of(1600))
            .duration(pts_of(3200) - pts_of(1600))
            .build(),
    );
    h.push(f32_buffer(3200, 3200)).unwrap();
    h.push_event(gst::event::Eos::new());
    let packets = drain(&mut h);
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[0].1.audio[0].flags, audio_flags::GAP);
    assert_eq!(packets[0].1.audio[0].gap_samples, 1600);
    assert_eq!(packets[1].1.audio[0].flags, 0);
    assert_eq!(packets[1].1.audio[0].samples[0], value(3200));
}

#[test]
fn video_frames_land_in_their_turn_and_stalls_are_stale() {
    for policy in ["latest", "all"] {
        let mux = mux();
        mux.set_property_from_str("video-policy", policy);
        let mut h = audio_harness(&mux, F32_CAPS);
        let mut video = Harness::with_element(&mux, Some("video"), None);
        video.set_live(false);
        video.set_src_caps_str("video/x-raw,format=RGB,width=4,height=2,framerate=10/1");
        // A non-live aggregator pad holds one buffer: interleave so that no push blocks.
        video.push(rgb_frame(1, 0)).unwrap();
        h.push(f32_buffer(0, 5 * SPT)).unwrap();
        for (shade, ms) in [(2, 100), (3, 250), (4, 850)] {
            video.push(rgb_frame(shade, ms)).unwrap();
        }
        video.push_event(gst::event::Eos::new());
        h.push_event(gst::event::Eos::new());
        let packets: Vec<Packet> = drain(&mut h).into_iter().map(|(_, p)| p).collect();
        assert_eq!(packets.len(), 5);
        let shades: Vec<Vec<u8>> = packets
            .iter()
            .map(|p| p.video.iter().map(|f| f.data[0]).collect())
            .collect();
        let expected_turn0 = if policy == "latest" {
            vec![2]
        } else {
            vec![1, 2]
        };
        assert_eq!(
            shades,
            vec![expected_turn0, vec![3], vec![], vec![], vec![4]],
            "{policy}"
        );
        let frame = &packets[1].video[0];
        assert_eq!(
            (frame.width, frame.height, frame.timestamp),
            (4, 2, 250_000_000)
        );
        assert_eq!(frame.data.len(), 24);
        for (k, packet) in packets.iter().enumerate() {
            let stale = packet.header.video_flags & video_flags::STALE != 0;
            assert_eq!(stale, k == 2 || k == 3, "turn {k}");
            assert_eq!(
                packet.header.video_flags & video_flags::PRESENT,
                video_flags::PRESENT
            );
        }
        // Newest frame 250 ms; turn 2 ends at 600 ms, turn 3 at 800 ms.
        assert_eq!(packets[2].header.video_age, 350_000_000);
        assert_eq!(packets[3].header.video_age, 550_000_000);
        assert_eq!(packets[4].header.video_age, 150_000_000);
    }
}

#[test]
fn text_lands_in_the_turn_of_its_timestamp() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    let mut text = Harness::with_element(&mux, Some("text_0"), None);
    text.set_live(false);
    text.set_src_caps_str("text/x-raw,format=utf8");
    let mut results = Harness::with_element(&mux, Some("text_1"), None);
    results.set_live(false);
    results.set_src_caps_str(packet::RESULT_CAPS_NAME);
    // A non-live aggregator pad holds one buffer: push in an order where no push waits for
    // a later one.
    text.push(text_buffer("hello", 50)).unwrap();
    results
        .push(text_buffer(
            r#"{"text": "Paris", "request_id": "r7", "final": true}"#,
            390,
        ))
        .unwrap();
    h.push(f32_buffer(0, 4 * SPT)).unwrap();
    text.push(text_buffer("world", 450)).unwrap();
    // A malformed result is dropped with a warning, not a pipeline error.
    results.push(text_buffer("{not json", 500)).unwrap();
    text.push_event(gst::event::Eos::new());
    results.push_event(gst::event::Eos::new());
    h.push_event(gst::event::Eos::new());
    let packets: Vec<Packet> = drain(&mut h).into_iter().map(|(_, p)| p).collect();
    assert_eq!(packets.len(), 4);
    let texts: Vec<Vec<(String, String, i64)>> = packets
        .iter()
        .map(|p| {
            p.text
                .iter()
                .map(|t| (t.pad.clone(), t.text.clone(), t.offset))
                .collect()
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            vec![("text_0".into(), "hello".into(), 50_000_000)],
            // The result stamped 390 ms belongs to turn 1 (200..400 ms).
            vec![("text_1".into(), "Paris".into(), 190_000_000)],
            vec![("text_0".into(), "world".into(), 50_000_000)],
            vec![],
        ]
    );
    let result = &packets[1].text[0];
    assert_eq!(result.flags, 0);
    let mut fields = result.fields.clone();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            ("final".to_owned(), "true".to_owned()),
            ("request_id".to_owned(), "r7".to_owned()),
        ]
    );
}

/// The live tests: the harness is live, the element waits on a test clock.
fn live_audio_harness(mux: &gst::Element) -> Harness {
    let mut h = Harness::with_element(mux, Some("audio"), Some("src"));
    h.use_testclock();
    h.set_src_caps_str(F32_CAPS);
    h
}

#[test]
fn live_stall_keeps_turns_coming_on_time() {
    let mux = mux();
    let mut h = live_audio_harness(&mux);
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_nseconds(TURN)));
    h.push(f32_buffer(0, SPT)).unwrap();
    let first = parse(&h.pull().unwrap());
    assert_eq!(first.header.flags & packet_flags::TIMED_OUT, 0);
    assert_eq!(first.audio[0].flags, 0);
    let clock = h.testclock().unwrap();
    // The audio stalls: every turn is still pushed, at window end + one turn of latency.
    for k in 1..=5u64 {
        let id = clock.wait_for_next_pending_id();
        assert_eq!(
            id.time(),
            gst::ClockTime::from_nseconds(k * TURN + TURN),
            "deadline of turn {k}"
        );
        h.crank_single_clock_wait().unwrap();
        let buffer = h.pull().unwrap();
        let packet = parse(&buffer);
        assert_eq!(packet.header.turn_index, k);
        assert_eq!(buffer.pts(), Some(gst::ClockTime::from_nseconds(k * TURN)));
        assert_eq!(
            packet.header.flags & packet_flags::TIMED_OUT,
            packet_flags::TIMED_OUT
        );
        assert_eq!(packet.audio[0].flags, audio_flags::GAP);
        assert_eq!(packet.audio[0].gap_samples as u64, SPT);
    }
    // The input comes back with its real timestamps: the late part is dropped, the rest lands
    // at the right sample of turn 6.
    h.push(f32_buffer(5 * SPT, 2 * SPT)).unwrap();
    let packet = parse(&h.pull().unwrap());
    assert_eq!(packet.header.turn_index, 6);
    assert_eq!(packet.audio[0].flags, 0);
    assert_eq!(packet.audio[0].samples[0], value(6 * SPT));
    let stats = mux.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("late-samples").unwrap(), SPT);
    assert_eq!(stats.get::<u64>("timed-out-turns").unwrap(), 5);
    assert_eq!(stats.get::<u64>("turns").unwrap(), 7);
}

#[test]
fn live_latency_adds_the_latency_property_and_upstream() {
    let mux = mux();
    mux.set_property("latency", 50_000_000u64);
    let mut h = live_audio_harness(&mux);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(260)));
}

#[test]
fn live_late_text_goes_into_the_next_turn_marked_late() {
    let mux = mux();
    let mut h = live_audio_harness(&mux);
    let mut text = Harness::with_element(&mux, Some("text_0"), None);
    text.set_src_caps_str("text/x-raw,format=utf8");
    h.push(f32_buffer(0, 3 * SPT)).unwrap();
    // The text pad is silent: turn 0 goes out at its deadline.
    let clock = h.testclock().unwrap();
    // Deadline: window end (200 ms) + latency beyond the turn (0) + upstream (0).
    assert_eq!(
        clock.wait_for_next_pending_id().time(),
        gst::ClockTime::from_mseconds(200)
    );
    h.crank_single_clock_wait().unwrap();
    let turn0 = parse(&h.pull().unwrap());
    assert!(turn0.text.is_empty());
    // Text stamped 100 ms (turn 0) arrives after turn 0 was pushed: next turn, late.
    text.push(text_buffer("sorry, late", 100)).unwrap();
    text.push(text_buffer("on time", 300)).unwrap();
    clock.wait_for_next_pending_id();
    h.crank_single_clock_wait().unwrap();
    let turn1 = parse(&h.pull().unwrap());
    assert_eq!(turn1.header.turn_index, 1);
    let items: Vec<(&str, u32, i64)> = turn1
        .text
        .iter()
        .map(|t| (t.text.as_str(), t.flags, t.offset))
        .collect();
    assert_eq!(
        items,
        vec![
            ("sorry, late", text_flags::LATE, -100_000_000),
            ("on time", 0, 100_000_000)
        ]
    );
}

fn eos_with_text_pad(loopback: bool) -> (bool, usize) {
    let mux = mux();
    let mut h = live_audio_harness(&mux);
    let mut text = Harness::with_element(&mux, Some("text_0"), None);
    text.set_src_caps_str("text/x-raw,format=utf8");
    let pad = mux.static_pad("text_0").unwrap();
    pad.set_property("loopback", loopback);
    text.push(text_buffer("result", 20)).unwrap();
    h.push(f32_buffer(0, 2 * SPT)).unwrap();
    h.push_event(gst::event::Eos::new());
    let clock = h.testclock().unwrap();
    let mut packets = 0;
    for _ in 0..6 {
        while let Some(buffer) = h.try_pull() {
            let packet = parse(&buffer);
            if loopback && packet.header.turn_index == 0 {
                assert_eq!(packet.text[0].flags, text_flags::LOOPBACK);
            }
            packets += 1;
        }
        // Either EOS came, or the element waits for the next deadline.
        while let Some(event) = h.try_pull_event() {
            if event.type_() == gst::EventType::Eos {
                return (true, packets);
            }
        }
        if clock.timed_wait_for_multiple_pending_ids(1, 1000).0 {
            h.crank_single_clock_wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    while let Some(event) = h.try_pull_event() {
        if event.type_() == gst::EventType::Eos {
            return (true, packets);
        }
    }
    (false, packets)
}

#[test]
fn loopback_text_pad_does_not_hold_back_eos() {
    let (eos, packets) = eos_with_text_pad(true);
    assert!(eos, "EOS held back by a loop-back pad");
    assert_eq!(packets, 2);
    // Control: an ordinary text pad that never ends holds EOS back; turns keep coming.
    let (eos, packets) = eos_with_text_pad(false);
    assert!(!eos);
    assert!(packets >= 4, "{packets}");
}

#[test]
fn flush_starts_again_at_turn_zero() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    h.push(f32_buffer(0, 2 * SPT)).unwrap();
    let before: Vec<Packet> = (0..2).map(|_| parse(&h.pull().unwrap())).collect();
    assert_eq!(before[1].header.turn_index, 1);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    // New data after the flush: running time starts at 0 again.
    h.push(f32_buffer(SPT * 10, SPT)).unwrap();
    h.push_event(gst::event::Eos::new());
    let after = drain(&mut h);
    assert_eq!(after.len(), 1 + 10, "silence until 2 s, then the turn");
    let (first_buffer, first) = &after[0];
    assert_eq!(first.header.turn_index, 0);
    assert_eq!(first_buffer.pts(), Some(gst::ClockTime::ZERO));
    assert_eq!(
        first.header.flags & packet_flags::DISCONT,
        packet_flags::DISCONT
    );
    let last = &after[10].1;
    assert_eq!(last.audio[0].flags, 0);
    assert_eq!(last.audio[0].samples[0], value(10 * SPT));
}

#[test]
fn properties_round_trip() {
    let mux = mux();
    assert_eq!(mux.property::<u64>("turn-duration"), TURN);
    mux.set_property("turn-duration", 500_000_000u64);
    assert_eq!(mux.property::<u64>("turn-duration"), 500_000_000);
    mux.set_property("audio-rate", 48_000u32);
    assert_eq!(mux.property::<u32>("audio-rate"), 48_000);
    mux.set_property("alignment-threshold", 1_000_000u64);
    assert_eq!(mux.property::<u64>("alignment-threshold"), 1_000_000);
    mux.set_property_from_str("video-policy", "all");
    assert_eq!(
        mux.property::<gstmicroturn::VideoPolicy>("video-policy"),
        gstmicroturn::VideoPolicy::All
    );
    let stats = mux.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("turns").unwrap(), 0);
    let pad = mux.request_pad_simple("text_%u").unwrap();
    assert_eq!(pad.name(), "text_0");
    assert!(!pad.property::<bool>("loopback"));
    pad.set_property("loopback", true);
    assert!(pad.property::<bool>("loopback"));
    // Pads are children: gst-launch can set `text_0::loopback=true`.
    let proxy = mux.dynamic_cast_ref::<gst::ChildProxy>().unwrap();
    assert!(proxy.child_by_name("text_0").is_some());
    assert!(mux.request_pad_simple("video").is_some());
    assert!(
        mux.request_pad_simple("video").is_none(),
        "one video pad only"
    );
    assert_eq!(
        mux.request_pad_simple("audio_%u").unwrap().name(),
        "audio_0"
    );
}

#[test]
fn changed_latency_is_reported() {
    let mux = mux();
    mux.set_property("turn-duration", 100_000_000u64);
    let mut h = live_audio_harness(&mux);
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(100)));
    h.push(f32_buffer(0, 1600)).unwrap();
    let packet = parse(&h.pull().unwrap());
    assert_eq!(packet.header.duration, 100_000_000);
    assert_eq!(packet.audio[0].samples.len(), 1600);
}

#[test]
fn wrong_audio_format_is_an_error_that_says_what_to_add() {
    init();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=audio/x-raw,format=S16LE,rate=44100,channels=1,layout=interleaved \
         ! microturnmux ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 882]);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let _ = src.push_buffer(buffer);
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", error.error(), error.debug());
    assert!(text.contains("audioconvert ! audioresample"), "{text}");
    assert!(text.contains("16000"), "{text}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn flushing_seek_restarts_turns_at_the_seek_position() {
    init();
    let pipeline = gst::parse::launch(
        "audiotestsrc samplesperbuffer=160 ! audio/x-raw,format=F32LE,rate=16000 \
         ! microturnmux name=mux ! appsink name=out sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::AsyncDone],
    )
    .expect("preroll");
    pipeline
        .seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            gst::ClockTime::from_seconds(2),
            gst::SeekType::Set,
            gst::ClockTime::from_seconds(3),
        )
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut packets = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer_owned().unwrap();
        let packet = parse(&buffer);
        packets.push((buffer, packet));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    // After the seek: one second, five turns, starting again at turn 0 at the seek position.
    assert_eq!(
        packets.len(),
        5,
        "{:?}",
        packets.iter().map(|(b, _)| b.pts()).collect::<Vec<_>>()
    );
    for (k, (buffer, packet)) in packets.iter().enumerate() {
        let k = k as u64;
        assert_eq!(packet.header.turn_index, k);
        assert_eq!(
            buffer.pts(),
            Some(gst::ClockTime::from_mseconds(2000 + 200 * k))
        );
        assert_eq!(packet.audio[0].flags, 0, "turn {k}");
    }
    assert_eq!(
        packets[0].1.header.flags & packet_flags::DISCONT,
        packet_flags::DISCONT
    );
}

#[test]
fn mid_stream_caps_changes_are_followed_or_refused() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    h.push(f32_buffer(0, SPT)).unwrap();
    // F32LE -> S16LE at the same rate: followed, the samples keep their place.
    h.set_src_caps_str(S16_CAPS);
    h.push(s16_buffer(SPT, SPT)).unwrap();
    let first = parse(&h.pull().unwrap());
    let second = parse(&h.pull().unwrap());
    assert_eq!(first.audio[0].samples[5], value(5));
    assert_eq!(second.header.turn_index, 1);
    assert_eq!(second.audio[0].flags, 0);
    assert_eq!(
        second.audio[0].samples[0],
        ((SPT % 8192) as i16 * 4) as f32 / 32768.0
    );
    // Another rate mid-stream: refused; the buffers after it are not read with the old
    // format, the flow says not-negotiated and no packet comes out of them.
    h.set_src_caps_str("audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved");
    let refused = (0..5)
        .any(|k| h.push(s16_buffer((2 + k) * SPT, SPT)) == Err(gst::FlowError::NotNegotiated));
    assert!(refused);
    assert!(h.try_pull().is_none());
}

#[test]
fn extra_participants_are_separate_tracks_under_their_pad_names() {
    let mux = mux();
    let mut main = audio_harness(&mux, F32_CAPS);
    let mut guest = Harness::with_element(&mux, Some("audio_0"), None);
    guest.set_live(false);
    guest.set_src_caps_str(S16_CAPS);
    main.push(f32_buffer(0, 2 * SPT)).unwrap();
    guest.push(s16_buffer(0, SPT)).unwrap();
    // The guest leaves after one turn: its track stays, as flagged silence.
    guest.push_event(gst::event::Eos::new());
    main.push_event(gst::event::Eos::new());
    let packets: Vec<Packet> = drain(&mut main).into_iter().map(|(_, p)| p).collect();
    assert_eq!(packets.len(), 2);
    for packet in &packets {
        let names: Vec<&str> = packet.audio.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["audio", "audio_0"]);
    }
    assert_eq!(packets[0].audio[0].samples[7], value(7));
    assert_eq!(packets[0].audio[1].samples[7], (7 * 4) as f32 / 32768.0);
    assert_eq!(packets[0].audio[1].flags, 0);
    assert_eq!(packets[1].audio[0].flags, 0);
    assert_eq!(
        packets[1].audio[1].flags,
        audio_flags::GAP | audio_flags::PARTIAL
    );
    assert_eq!(packets[1].audio[1].gap_samples as u64, SPT);
}

#[test]
fn a_new_video_size_mid_stream_is_followed() {
    let mux = mux();
    let mut h = audio_harness(&mux, F32_CAPS);
    let mut video = Harness::with_element(&mux, Some("video"), None);
    video.set_live(false);
    video.set_src_caps_str("video/x-raw,format=RGB,width=4,height=2,framerate=10/1");
    video.push(rgb_frame(1, 0)).unwrap();
    h.push(f32_buffer(0, 2 * SPT)).unwrap();
    video.set_src_caps_str("video/x-raw,format=RGB,width=2,height=2,framerate=10/1");
    // 2x2 RGB rows are padded to 8 bytes: the aligner packs them (6 bytes per row).
    let mut small = gst::Buffer::from_slice([[9u8, 9, 9, 9, 9, 9, 0, 0]; 2].concat());
    small
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(250));
    video.push(small).unwrap();
    video.push_event(gst::event::Eos::new());
    h.push_event(gst::event::Eos::new());
    let packets: Vec<Packet> = drain(&mut h).into_iter().map(|(_, p)| p).collect();
    assert_eq!(packets.len(), 2);
    assert_eq!(
        (packets[0].video[0].width, packets[0].video[0].height),
        (4, 2)
    );
    assert_eq!(
        (packets[1].video[0].width, packets[1].video[0].height),
        (2, 2)
    );
    assert_eq!(packets[1].video[0].data, vec![9u8; 12]);
    // The src caps follow the new frame size.
    let caps = mux.static_pad("src").unwrap().current_caps().unwrap();
    let structure = caps.structure(0).unwrap();
    assert_eq!(structure.get::<i32>("video-width").unwrap(), 2);
    assert_eq!(structure.get::<i32>("video-height").unwrap(), 2);
}
