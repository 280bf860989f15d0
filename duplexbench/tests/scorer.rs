//! The scorer on synthetic recordings with known answers: agent tones placed at exact sample
//! offsets into silence. Onsets are exact to the sample (the detector refines hop-level
//! boundaries to the first sample at its -45 dBFS level, and a cosine burst's first sample is
//! at full amplitude); offsets are exact to the last sample at that level.

mod common;

use common::*;
use duplexbench::detect::DetectorConfig;
use duplexbench::score::{Rules, Stats, Word, quantile, score_configuration, score_dialogue};
use duplexbench::segments::Task;

fn score_one(
    user: duplexbench::segments::UserSegments,
    agent: duplexbench::audio::Mono,
) -> duplexbench::score::DialogueResult {
    score_dialogue(
        &input(user, agent),
        &DetectorConfig::default(),
        &Rules::default(),
    )
}

#[test]
fn turn_taking_latency_is_exact_to_the_sample() {
    // User turn 1.0 s .. 2.5 s; the agent answers 6543 samples (408.9375 ms) later, for 2 s.
    let user = user_side(
        5 * 16_000,
        &[(16_000, 40_000)],
        vec![item(Task::TurnTaking, 16_000, 40_000)],
    );
    let onset = 40_000 + 6543;
    let result = score_one(user, tones(5 * 16_000, RATE, &[(onset, onset + 32_000)]));
    let turn = &result.items[0];
    assert_eq!(turn.take_over, Some(true));
    assert_time(turn.agent_onset_s, seconds(onset));
    assert_time(turn.latency_s, 6543.0 / 16_000.0);
    assert_eq!(result.agent_speech.len(), 1);
}

#[test]
fn latency_is_exact_at_another_agent_sample_rate() {
    // A 22.05 kHz agent recording (Piper's rate) against a 16 kHz user side.
    let user = user_side(
        4 * 16_000,
        &[(8_000, 24_000)],
        vec![item(Task::TurnTaking, 8_000, 24_000)],
    );
    // User offset 1.5 s = 33075 samples at 22.05 kHz; agent onset 7777 samples later.
    let onset = 33_075 + 7_777;
    let agent = tones(4 * 22_050, 22_050, &[(onset, onset + 30_000)]);
    let result = score_one(user, agent);
    let latency = result.items[0].latency_s.expect("take-over");
    assert!((latency - 7_777.0 / 22_050.0).abs() < 1e-12, "{latency}");
}

#[test]
fn agent_that_never_speaks_has_no_take_over_and_no_latency() {
    let user = user_side(
        4 * 16_000,
        &[(8_000, 24_000)],
        vec![item(Task::TurnTaking, 8_000, 24_000)],
    );
    let configuration = score_configuration(
        "mute",
        &[input(user, tones(4 * 16_000, RATE, &[]))],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    let turn = &configuration.dialogues[0].items[0];
    assert_eq!(turn.take_over, Some(false));
    assert_eq!(turn.latency_s, None);
    let summary = &configuration.summary.turn_taking;
    assert_eq!((summary.items, summary.take_overs), (1, 0));
    assert_eq!(summary.take_over_rate, Some(0.0));
    assert_eq!(summary.latency_s.count, 0);
    assert_eq!(summary.latency_s.median, None);
}

#[test]
fn take_over_follows_full_duplex_bench_v1() {
    let user = || {
        user_side(
            6 * 16_000,
            &[(8_000, 24_000)],
            vec![item(Task::TurnTaking, 8_000, 24_000)],
        )
    };
    // 0.6 s of speech, no transcript: under 1 s, so not a take-over (duration-only rule).
    let short = || tones(6 * 16_000, RATE, &[(32_000, 32_000 + 9_600)]);
    assert_eq!(score_one(user(), short()).items[0].take_over, Some(false));
    // The same audio with a 4-word transcript: more than 3 words, so a take-over (v1 rule).
    let words: Vec<Word> = ["yes", "of", "course", "sure"]
        .iter()
        .enumerate()
        .map(|(i, w)| Word {
            word: (*w).into(),
            start: 2.0 + 0.15 * i as f64,
            end: 2.1 + 0.15 * i as f64,
        })
        .collect();
    let mut with_words = input(user(), short());
    with_words.words = Some(words.clone());
    let result = score_dialogue(&with_words, &DetectorConfig::default(), &Rules::default());
    assert_eq!(result.items[0].take_over, Some(true));
    assert_time(result.items[0].latency_s, 0.5);
    // Three words inside 1 s: not a take-over.
    with_words.words = Some(words[..3].to_vec());
    let result = score_dialogue(&with_words, &DetectorConfig::default(), &Rules::default());
    assert_eq!(result.items[0].take_over, Some(false));
    // Two 0.4 s bursts 0.4 s apart (bridged? no: 400 ms > 300 ms) spanning 1.2 s: a take-over.
    let split = tones(
        6 * 16_000,
        RATE,
        &[(32_000, 32_000 + 6_400), (45_000, 45_000 + 6_400)],
    );
    let result = score_one(user(), split);
    assert_eq!(result.agent_speech.len(), 2);
    assert_eq!(result.items[0].take_over, Some(true));
}

#[test]
fn latency_is_clamped_at_zero_when_the_agent_starts_early() {
    // The agent starts 0.25 s before the user's offset and talks for 2 s (overlap).
    let user = user_side(
        5 * 16_000,
        &[(8_000, 24_000)],
        vec![item(Task::TurnTaking, 8_000, 24_000)],
    );
    let result = score_one(user, tones(5 * 16_000, RATE, &[(20_000, 52_000)]));
    assert_eq!(result.items[0].take_over, Some(true));
    assert_time(result.items[0].agent_onset_s, 1.25);
    assert_time(result.items[0].latency_s, 0.0);
}

#[test]
fn a_short_agent_backchannel_inside_the_turn_is_not_the_answer() {
    // Agent "mm-hm" (0.3 s) in the middle of the user's turn, then the real answer 0.5 s
    // after the offset.
    let user = user_side(
        6 * 16_000,
        &[(8_000, 40_000)],
        vec![item(Task::TurnTaking, 8_000, 40_000)],
    );
    let agent = tones(
        6 * 16_000,
        RATE,
        &[(20_000, 24_800), (48_000, 48_000 + 32_000)],
    );
    let result = score_one(user, agent);
    assert_eq!(result.agent_speech.len(), 2);
    assert_time(result.items[0].latency_s, 0.5);
}

#[test]
fn pause_take_over_counts_agent_speech_that_starts_in_the_pause() {
    // "I was going to" [1.0, 2.0) s, pause [2.0, 3.0) s, "the coast" [3.0, 4.0) s.
    let segments = [(16_000, 32_000), (48_000, 64_000)];
    let user = || {
        user_side(
            6 * 16_000,
            &segments,
            vec![item(Task::Pause, 32_000, 48_000)],
        )
    };
    let total = 6 * 16_000;
    // Agent starts 0.4 s into the pause and speaks 1.2 s (over the user's resumption).
    let took_over = score_one(user(), tones(total, RATE, &[(38_400, 38_400 + 19_200)]));
    assert_eq!(took_over.items[0].take_over, Some(true));
    assert_time(took_over.items[0].agent_onset_s, 2.4);
    assert_eq!(took_over.items[0].latency_s, None, "pauses have no latency");
    // Silent agent.
    let waited = score_one(user(), tones(total, RATE, &[]));
    assert_eq!(waited.items[0].take_over, Some(false));
    // A 0.4 s blip in the pause: under 1 s, not a take-over.
    let blip = score_one(user(), tones(total, RATE, &[(40_000, 46_400)]));
    assert_eq!(blip.items[0].take_over, Some(false));
    // The agent answers only after the sentence is complete: not a pause take-over.
    let after = score_one(user(), tones(total, RATE, &[(70_000, 90_000)]));
    assert_eq!(after.items[0].take_over, Some(false));
    // Agent speech during the pause is also an onset the summary counts.
    let configuration = score_configuration(
        "x",
        &[
            input(user(), tones(total, RATE, &[(38_400, 38_400 + 19_200)])),
            input(user(), tones(total, RATE, &[])),
        ],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    assert_eq!(configuration.summary.pause.take_over_rate, Some(0.5));
    assert_eq!(configuration.summary.pause.any_onset_rate, Some(0.5));
    // The 0.4 s blip is an agent sound in the pause but not a take-over.
    let blips = score_configuration(
        "x",
        &[input(user(), tones(total, RATE, &[(40_000, 46_400)]))],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    assert_eq!(blips.summary.pause.take_over_rate, Some(0.0));
    assert_eq!(blips.summary.pause.any_onsets, 1);
}

#[test]
fn barge_in_stop_latency_and_response_are_exact() {
    // Agent talks from 1.0 s; user interrupts at 3.0 s for 1.0 s; agent audio stops 3000
    // samples (187.5 ms) after the user's onset, then answers 0.5 s after the user's offset.
    let total = 8 * 16_000;
    let user = user_side(
        total,
        &[(48_000, 64_000)],
        vec![item(Task::Interruption, 48_000, 64_000)],
    );
    let stop = 48_000 + 3_000;
    let agent = tones(total, RATE, &[(16_000, stop), (72_000, 72_000 + 32_000)]);
    let expected_end = last_loud_end(&agent, stop);
    assert!(stop - expected_end < 3, "burst ends loud");
    let result = score_one(user, agent);
    let interruption = &result.items[0];
    assert_eq!(interruption.applicable, Some(true));
    assert_eq!(interruption.stopped, Some(true));
    assert_time(interruption.stop_latency_s, seconds(expected_end) - 3.0);
    assert_eq!(interruption.response, Some(true));
    assert_time(interruption.response_latency_s, 0.5);
}

#[test]
fn agent_that_never_stops_has_stop_rate_zero() {
    let total = 8 * 16_000;
    let user = || {
        user_side(
            total,
            &[(48_000, 64_000)],
            vec![item(Task::Interruption, 48_000, 64_000)],
        )
    };
    // Talks from 1.0 s to the end of the recording.
    let configuration = score_configuration(
        "stubborn",
        &[input(user(), tones(total, RATE, &[(16_000, total)]))],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    let item = &configuration.dialogues[0].items[0];
    assert_eq!(item.stopped, Some(false));
    assert_eq!(item.stop_latency_s, None);
    assert_eq!(item.response, Some(false));
    let summary = &configuration.summary.interruption;
    assert_eq!((summary.applicable, summary.stops), (1, 0));
    assert_eq!(summary.stop_rate, Some(0.0));
    assert_eq!(summary.stop_latency_s.count, 0);
    // Stops 2.5 s after the onset: beyond the 2 s stop window, so not a stop either.
    let late = score_one(user(), tones(total, RATE, &[(16_000, 48_000 + 40_000)]));
    assert_eq!(late.items[0].stopped, Some(false));
}

#[test]
fn interruption_while_the_agent_is_silent_is_not_applicable() {
    let total = 8 * 16_000;
    let user = user_side(
        total,
        &[(48_000, 64_000)],
        vec![item(Task::Interruption, 48_000, 64_000)],
    );
    // The agent finished before the user spoke.
    let configuration = score_configuration(
        "x",
        &[input(user, tones(total, RATE, &[(16_000, 40_000)]))],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    assert_eq!(configuration.dialogues[0].items[0].applicable, Some(false));
    assert_eq!(configuration.dialogues[0].items[0].stopped, None);
    let summary = &configuration.summary.interruption;
    assert_eq!((summary.items, summary.applicable), (1, 0));
    assert_eq!(summary.stop_rate, None);
}

#[test]
fn backchannel_false_stops() {
    let total = 10 * 16_000;
    // Back-channel "mm-hm" at [3.0, 3.4) s while the agent talks from 1.0 s.
    let user = || {
        user_side(
            total,
            &[(48_000, 54_400)],
            vec![item(Task::Backchannel, 48_000, 54_400)],
        )
    };
    // Keeps talking to 8 s: no false stop.
    let kept = score_one(user(), tones(total, RATE, &[(16_000, 128_000)]));
    assert_eq!(kept.items[0].applicable, Some(true));
    assert_eq!(kept.items[0].false_stop, Some(false));
    // Stops 0.3 s after the back-channel ended and stays silent: a false stop.
    let stopped = score_one(user(), tones(total, RATE, &[(16_000, 54_400 + 4_800)]));
    assert_eq!(stopped.items[0].false_stop, Some(true));
    // Stops, but resumes 0.5 s later (a breath between sentences): not a false stop.
    let breath = score_one(
        user(),
        tones(
            total,
            RATE,
            &[(16_000, 54_400 + 4_800), (54_400 + 4_800 + 8_000, 128_000)],
        ),
    );
    assert_eq!(breath.agent_speech.len(), 2);
    assert_eq!(breath.items[0].false_stop, Some(false));
    // Agent silent at the back-channel: not applicable.
    let silent = score_one(user(), tones(total, RATE, &[(16_000, 40_000)]));
    assert_eq!(silent.items[0].applicable, Some(false));
    assert_eq!(silent.items[0].false_stop, None);
}

#[test]
fn two_configurations_give_ratios() {
    let user = || {
        user_side(
            6 * 16_000,
            &[(8_000, 24_000)],
            vec![item(Task::TurnTaking, 8_000, 24_000)],
        )
    };
    let fast = score_configuration(
        "default",
        &[input(user(), tones(6 * 16_000, RATE, &[(28_800, 60_000)]))],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    let slow = score_configuration(
        "silence-500ms",
        &[input(user(), tones(6 * 16_000, RATE, &[(33_600, 70_000)]))],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    assert_time(fast.summary.turn_taking.latency_s.median, 0.3);
    assert_time(slow.summary.turn_taking.latency_s.median, 0.6);
    let results = duplexbench::score::results(
        vec![fast, slow],
        DetectorConfig::default(),
        Rules::default(),
    );
    let ratio = results
        .ratios
        .iter()
        .find(|r| r.metric == "turn-taking latency p50 (s)")
        .unwrap();
    assert_time(ratio.value, 0.5);
    // take-over rates 1/1: ratio 1; no pause items: no ratio.
    let take_over = results.ratios.iter().find(|r| r.metric == "take-over rate");
    assert_eq!(take_over.unwrap().value, Some(1.0));
    let pause = results
        .ratios
        .iter()
        .find(|r| r.metric.starts_with("pause"))
        .unwrap();
    assert_eq!(pause.value, None);
    let table = duplexbench::score::text_table(&results);
    assert!(table.contains("default/silence-500ms"), "{table}");
    assert!(table.contains("0.300 (n=1)"), "{table}");
    assert!(table.contains("0.600 (n=1)"), "{table}");
    assert!(table.contains("0.50"), "{table}");
    // The JSON round-trips.
    let json = serde_json::to_string(&results).unwrap();
    let back: duplexbench::score::Results = serde_json::from_str(&json).unwrap();
    assert_eq!(back, results);
}

#[test]
fn percentiles_interpolate_like_numpy() {
    let values: Vec<f64> = (1..=20).map(f64::from).collect();
    let stats = Stats::of(&values);
    assert_eq!(stats.count, 20);
    assert_time(stats.median, 10.5);
    assert!((stats.p95.unwrap() - 19.05).abs() < 1e-12);
    assert_eq!(stats.mean, Some(10.5));
    assert_eq!(quantile(&[4.0], 0.95), Some(4.0));
    assert_eq!(Stats::of(&[]).p95, None);
}

#[test]
fn decisions_are_counted_not_scored() {
    let user = user_side(
        5 * 16_000,
        &[(16_000, 40_000)],
        vec![item(Task::TurnTaking, 16_000, 40_000)],
    );
    let mut with_decisions = input(user, tones(5 * 16_000, RATE, &[]));
    with_decisions.decisions = duplexbench::decisions::parse_decisions(
        "d",
        "{\"kind\":\"user-turn-ended\",\"time_s\":2.6}\n{\"kind\":\"agent-started\",\"time_s\":2.7}\n",
    )
    .unwrap();
    let configuration = score_configuration(
        "claims",
        &[with_decisions],
        &DetectorConfig::default(),
        &Rules::default(),
    );
    // The element claims it started; the audio is silent: no take-over.
    assert_eq!(configuration.summary.turn_taking.take_overs, 0);
    assert_eq!(configuration.summary.decisions["agent-started"], 1);
    assert_eq!(configuration.summary.decisions["user-turn-ended"], 1);
}
