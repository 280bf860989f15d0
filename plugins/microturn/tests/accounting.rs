//! Sample accounting of the aligner core over one hour of audio (the plain struct, as the
//! element would feed it), plus gaps, discontinuities and late audio.
//!
//! The element itself is checked over shorter spans in `element.rs`: the Harness path costs
//! tens of microseconds per buffer in debug builds, too slow for 360 000 buffers.

use gstmicroturn::aligner::{Aligner, Stats, samples_per_turn};
use interaction_protocol::packet::{Packet, audio_flags, packet_flags};

const RATE: u32 = 16_000;
const TURN: u64 = 200_000_000;
const THRESHOLD: u64 = 40_000_000;

/// The value of absolute sample `n`: exact in f32 and different for neighbouring samples.
fn value(n: usize) -> f32 {
    (n % (1 << 24)) as f32
}

/// Samples `start..start + count` of the test signal.
fn signal(start: u64, count: u64) -> impl ExactSizeIterator<Item = f32> {
    (start as usize..(start + count) as usize).map(value)
}

fn pts_of(sample: u64) -> u64 {
    // As upstream elements stamp buffers: floor(n / rate) in ns.
    sample * 1_000_000_000 / u64::from(RATE)
}

/// A deterministic generator of buffer sizes (xorshift), 1..=max samples.
struct Sizes(u64);
impl Sizes {
    fn next(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + self.0 % max
    }
}

/// Pushes `total` samples in buffers of the sizes `size()` gives, writes turns as they
/// complete, and checks every sample of every turn. Returns the number of turns.
fn run(total: u64, mut size: impl FnMut() -> u64, stamped: bool) -> u64 {
    let mut aligner = Aligner::<Vec<u8>>::new(TURN, RATE, THRESHOLD).unwrap();
    aligner.add_audio("audio");
    let spt = samples_per_turn(TURN, RATE).unwrap();
    assert_eq!(spt, 3200);
    let mut pushed = 0;
    let mut turns = 0u64;
    while pushed < total {
        let count = size().min(total - pushed);
        let pts = stamped.then(|| pts_of(pushed));
        aligner.audio[0].push(pts, false, signal(pushed, count), &mut aligner.stats);
        pushed += count;
        while aligner.audio[0].turn_complete() {
            let bytes = aligner.write_turn(false).unwrap();
            let packet = Packet::parse(bytes).unwrap();
            assert_eq!(packet.header.turn_index, turns);
            assert_eq!(packet.header.start, turns * TURN, "turn {turns} drifted");
            assert_eq!(packet.header.samples_per_track as u64, spt);
            let track = &packet.audio[0];
            assert_eq!(track.name, "audio");
            assert_eq!(track.flags, 0, "turn {turns} flagged");
            assert_eq!(track.gap_samples, 0);
            let first = turns * spt;
            for (j, sample) in track.samples.iter().enumerate() {
                assert_eq!(
                    *sample,
                    value((first + j as u64) as usize),
                    "turn {turns} sample {j} is wrong: lost or duplicated audio"
                );
            }
            turns += 1;
        }
    }
    assert_eq!(aligner.stats.late_samples, 0);
    assert_eq!(aligner.stats.gap_samples, 0);
    turns
}

const HOUR: u64 = 3600 * RATE as u64;

#[test]
fn one_hour_in_10_ms_buffers() {
    assert_eq!(run(HOUR, || 160, true), 18_000);
}

#[test]
fn one_hour_in_1_s_buffers() {
    assert_eq!(run(HOUR, || 16_000, true), 18_000);
}

#[test]
fn one_hour_in_random_buffers() {
    let mut sizes = Sizes(0x9e37_79b9_7f4a_7c15);
    assert_eq!(run(HOUR, || sizes.next(7000), true), 18_000);
    // Without timestamps, buffers are taken as contiguous.
    let mut sizes = Sizes(42);
    assert_eq!(run(HOUR / 10, || sizes.next(5000), false), 1_800);
}

fn new_aligner() -> Aligner<Vec<u8>> {
    let mut aligner = Aligner::<Vec<u8>>::new(TURN, RATE, THRESHOLD).unwrap();
    aligner.add_audio("audio");
    aligner
}

fn push(aligner: &mut Aligner<Vec<u8>>, start: u64, count: u64, discont: bool) {
    aligner.audio[0].push(
        Some(pts_of(start)),
        discont,
        signal(start, count),
        &mut aligner.stats,
    );
}

fn turn(aligner: &mut Aligner<Vec<u8>>) -> Packet {
    Packet::parse(aligner.write_turn(false).unwrap()).unwrap()
}

#[test]
fn timestamp_gap_becomes_flagged_silence_and_later_audio_lands_right() {
    let mut aligner = new_aligner();
    // 0.5 s, then a jump of 300 ms (4800 samples) without a DISCONT flag, then 0.5 s more.
    push(&mut aligner, 0, 8000, false);
    push(&mut aligner, 12_800, 8000, false);
    let turns: Vec<Packet> = (0..5).map(|_| turn(&mut aligner)).collect();
    // Turns 0 and 1: clean. Turn 2 = samples 6400..9600: 1600 gap samples from 8000.
    assert_eq!(turns[1].audio[0].flags, 0);
    let t2 = &turns[2].audio[0];
    assert_eq!(t2.flags & audio_flags::GAP, audio_flags::GAP);
    assert_eq!(t2.flags & audio_flags::DISCONT, 0);
    assert_eq!(t2.gap_samples, 1600);
    assert_eq!(t2.samples[1599], value(7999));
    assert_eq!(t2.samples[1600], 0.0);
    // Turn 3 = 9600..12800: all silence.
    assert_eq!(turns[3].audio[0].gap_samples, 3200);
    assert!(turns[3].audio[0].samples.iter().all(|s| *s == 0.0));
    // Turn 4 = 12800..16000: the later audio, at the right sample, where the input re-synced.
    let t4 = &turns[4].audio[0];
    assert_eq!(t4.flags, audio_flags::DISCONT);
    assert_eq!(t4.gap_samples, 0);
    assert_eq!(t4.samples[0], value(12_800));
    assert_eq!(t4.samples[3199], value(15_999));
    assert_eq!(aligner.stats.gap_samples, 4800);
}

#[test]
fn discont_flag_resyncs_on_the_timestamp() {
    let mut aligner = new_aligner();
    push(&mut aligner, 0, 3000, false);
    // A DISCONT buffer 10 ms later (inside the threshold, but flagged): resync there.
    push(&mut aligner, 3160, 3200, true);
    let t0 = turn(&mut aligner);
    let a = &t0.audio[0];
    assert_eq!(a.flags, audio_flags::GAP | audio_flags::DISCONT);
    assert_eq!(a.gap_samples, 160);
    assert_eq!(a.samples[3160], value(3160));
    // Small jitter without the flag is ignored: contiguous.
    let mut aligner = new_aligner();
    push(&mut aligner, 0, 1000, false);
    aligner.audio[0].push(
        Some(pts_of(1000) + 3_000_000),
        false,
        signal(1000, 3000),
        &mut aligner.stats,
    );
    let t0 = turn(&mut aligner);
    assert_eq!(t0.audio[0].flags, 0);
    assert_eq!(t0.audio[0].samples[1000], value(1000));
}

#[test]
fn late_audio_after_a_stall_is_dropped_and_the_rest_lands_right() {
    let mut aligner = new_aligner();
    push(&mut aligner, 0, 3200, false);
    let _ = turn(&mut aligner);
    // The input stalls: turn 1 is written at its deadline with nothing.
    let stalled = Packet::parse(aligner.write_turn(true).unwrap()).unwrap();
    assert_eq!(
        stalled.header.flags & packet_flags::TIMED_OUT,
        packet_flags::TIMED_OUT
    );
    assert_eq!(stalled.audio[0].gap_samples, 3200);
    // Then the backlog arrives: turn 1's samples are late, turn 2's land in turn 2.
    push(&mut aligner, 3200, 6400, false);
    let t2 = turn(&mut aligner);
    assert_eq!(t2.audio[0].flags, 0);
    assert_eq!(t2.audio[0].samples[0], value(6400));
    assert_eq!(aligner.stats.late_samples, 3200);
    assert_eq!(
        aligner.stats,
        Stats {
            turns: 3,
            timed_out_turns: 1,
            late_samples: 3200,
            gap_samples: 3200,
            ..Stats::default()
        }
    );
}

#[test]
fn gap_events_are_flagged_silence() {
    let mut aligner = new_aligner();
    push(&mut aligner, 0, 1600, false);
    aligner.audio[0].push_gap(Some(pts_of(1600)), false, 1600, &mut aligner.stats);
    let t0 = turn(&mut aligner);
    assert_eq!(t0.audio[0].flags, audio_flags::GAP);
    assert_eq!(t0.audio[0].gap_samples, 1600);
}

#[test]
fn n_tracks_are_carried_separately_under_their_names() {
    let mut aligner = Aligner::<Vec<u8>>::new(TURN, RATE, THRESHOLD).unwrap();
    for name in ["audio", "audio_0", "audio_1"] {
        aligner.add_audio(name);
    }
    for (index, track) in aligner.audio.iter_mut().enumerate() {
        let offset = index as f32 * 1000.0;
        track.push(
            Some(0),
            false,
            (0..3200usize).map(|n| offset + n as f32),
            &mut aligner.stats,
        );
    }
    aligner.audio[2].set_eos(true);
    let packet = turn(&mut aligner);
    let names: Vec<&str> = packet.audio.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["audio", "audio_0", "audio_1"]);
    assert_eq!(packet.audio[1].samples[0], 1000.0);
    assert_eq!(packet.audio[2].samples[5], 2005.0);
    // An ended track keeps its place, as silence flagged partial.
    let next = turn(&mut aligner);
    assert_eq!(
        next.audio[2].flags & audio_flags::PARTIAL,
        audio_flags::PARTIAL
    );
    assert_eq!(next.audio[2].gap_samples, 3200);
}

#[test]
fn turn_duration_must_be_whole_samples() {
    assert!(Aligner::<Vec<u8>>::new(200_000_000, 16_000, THRESHOLD).is_ok());
    let error = Aligner::<Vec<u8>>::new(200_000_001, 16_000, THRESHOLD).unwrap_err();
    assert!(error.contains("whole number of samples"), "{error}");
}

#[test]
fn absurd_timestamp_jumps_are_ignored_not_filled() {
    let mut aligner = new_aligner();
    push(&mut aligner, 0, 1600, false);
    // A timestamp days ahead (broken input): filling it would hold days of silence at once.
    aligner.audio[0].push(
        Some(3 * 86_400 * 1_000_000_000),
        true,
        signal(1600, 1600),
        &mut aligner.stats,
    );
    let t0 = turn(&mut aligner);
    assert_eq!(t0.audio[0].flags, 0);
    assert_eq!(t0.audio[0].samples[1600], value(1600));
    assert_eq!(aligner.stats.ignored_jumps, 1);
    // A hole within the limit (one minute) is still filled: here 30 s.
    let mut aligner = new_aligner();
    push(&mut aligner, 0, 3200, false);
    push(&mut aligner, 30 * 16_000, 3200, false);
    assert_eq!(aligner.stats.ignored_jumps, 0);
    assert_eq!(aligner.audio[0].filled_until(), 30 * 16_000 + 3200);
}
