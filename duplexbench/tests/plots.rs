//! The pictures on edge cases: no agent speech, a decision past the end, no latencies at all.

mod common;

use common::*;
use duplexbench::decisions::Decision;
use duplexbench::detect::DetectorConfig;
use duplexbench::plot;
use duplexbench::score::{Rules, score_configuration};
use duplexbench::segments::Task;

fn size_and_colours(path: &std::path::Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let mut colours: Vec<&[u8]> = buffer[..info.buffer_size()].chunks(channels).collect();
    colours.sort();
    colours.dedup();
    (info.width, info.height, colours.len())
}

#[test]
fn silent_agent_and_stray_decisions_still_draw() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("duplexbench-plots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let user = user_side(
        4 * 16_000,
        &[(8_000, 24_000)],
        vec![item(Task::TurnTaking, 8_000, 24_000)],
    );
    let mut silent = input(user.clone(), tones(4 * 16_000, RATE, &[]));
    silent.decisions = vec![
        Decision {
            kind: "agent-started".into(),
            time_s: 1.7,
        },
        Decision {
            kind: "late".into(),
            time_s: 500.0,
        },
    ];
    let configuration = score_configuration(
        "silent",
        &[silent],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    let warnings = &configuration.dialogues[0].warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("1 decision(s) after the end"),
        "{warnings:?}"
    );
    let timeline = dir.join("timeline.png");
    plot::draw_timeline(&timeline, "silent", &user, &configuration.dialogues[0]).unwrap();
    let (width, height, colours) = size_and_colours(&timeline);
    assert_eq!((width, height), (1600, 480));
    assert!(colours >= 8, "{colours} colours");
    // No latency anywhere: the histogram says so instead of failing.
    let histogram = dir.join("histogram.png");
    plot::draw_latency_histogram(&histogram, &[configuration]).unwrap();
    let (width, height, colours) = size_and_colours(&histogram);
    assert_eq!((width, height), (1600, 560));
    assert!(colours >= 8, "{colours} colours");
}
