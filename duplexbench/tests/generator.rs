//! The user-side generator with the real espeak-ng: reproducible from the seed, and the
//! segments JSON matches the audio to the sample.

use std::path::{Path, PathBuf};

use duplexbench::audio;
use duplexbench::generate::{self, render_dialogue};
use duplexbench::script::{self, Dialogue};
use duplexbench::segments::{Task, UserSegments};
use duplexbench::voice::{
    EspeakNg, TRIM_THRESHOLD, USER_SAMPLE_RATE, UserVoice, VoiceParams, Voices,
};

/// One built-in dialogue per task (with two pauses, and two back-channels).
fn sample_dialogues() -> Vec<Dialogue> {
    let wanted = ["turn-01", "pause-03", "interrupt-02", "backchannel-01"];
    let dialogues: Vec<Dialogue> = script::builtin_dialogues()
        .unwrap()
        .into_iter()
        .filter(|d| wanted.contains(&d.id.as_str()))
        .collect();
    assert_eq!(dialogues.len(), wanted.len());
    dialogues
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("duplexbench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

#[test]
fn same_seed_gives_bit_identical_files_and_another_seed_does_not() {
    let dialogues = sample_dialogues();
    let voice = Voices::default();
    let (first, second, other) = (scratch("seed-a"), scratch("seed-b"), scratch("seed-c"));
    generate::generate_set(&dialogues, 42, &voice, &first).unwrap();
    generate::generate_set(&dialogues, 42, &voice, &second).unwrap();
    generate::generate_set(&dialogues, 43, &voice, &other).unwrap();
    let (a, b, c) = (files(&first), files(&second), files(&other));
    // 4 WAVs, 4 JSONs, the manifest.
    assert_eq!(a.len(), 9);
    assert_eq!(a, b, "same seed, different bytes");
    for ((name, bytes_a), (_, bytes_c)) in a.iter().zip(&c) {
        if name.ends_with(".wav") {
            assert_ne!(
                bytes_a, bytes_c,
                "{name}: seed 43 gave the same audio as 42"
            );
        }
    }
}

/// Checks one rendered dialogue against its JSON.
fn check_matches_audio(samples: &[i16], user: &UserSegments) {
    assert_eq!(user.sample_rate, USER_SAMPLE_RATE);
    assert_eq!(user.num_samples, samples.len() as u64);
    user.validate().unwrap();
    let mut inside = vec![false; samples.len()];
    for segment in &user.segments {
        let (start, end) = (segment.start as usize, segment.end as usize);
        inside[start..end].iter_mut().for_each(|f| *f = true);
        // Boundaries exact to the sample: the first and last samples reach the trim threshold.
        assert!(
            samples[start].unsigned_abs() >= TRIM_THRESHOLD as u16,
            "{segment:?}"
        );
        assert!(
            samples[end - 1].unsigned_abs() >= TRIM_THRESHOLD as u16,
            "{segment:?}"
        );
        // Speech energy inside: RMS above -40 dBFS.
        let energy: f64 = samples[start..end]
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum();
        let rms_db = 20.0 * ((energy / (end - start) as f64).sqrt() / 32768.0).log10();
        assert!(rms_db > -40.0, "{}: {rms_db:.1} dBFS", segment.text);
    }
    // Digital silence outside.
    let loud_outside = samples
        .iter()
        .zip(&inside)
        .filter(|(s, inside)| !**inside && **s != 0)
        .count();
    assert_eq!(
        loud_outside, 0,
        "{}: non-zero samples outside segments",
        user.dialogue
    );
}

#[test]
fn segments_json_matches_the_audio_and_labels_each_task() {
    let voice = Voices::default();
    let mut tasks_seen = Vec::new();
    for dialogue in sample_dialogues() {
        let rendered = render_dialogue(&dialogue, 5, &voice).unwrap();
        let user = &rendered.segments;
        check_matches_audio(&rendered.samples, user);
        let voice_info = user.voice.as_ref().unwrap();
        assert!(dialogue.voices.contains(&voice_info.name));
        assert!((140..=200).contains(&voice_info.rate.unwrap()));
        if voice_info.engine == "piper" {
            assert_eq!(voice_info.pitch, None, "Piper has no pitch");
        } else {
            assert!((30..=70).contains(&voice_info.pitch.unwrap()));
        }
        for item in &user.items {
            tasks_seen.push(item.task);
            let length = user.seconds(item.end - item.start);
            assert!(item.window_end.unwrap() >= item.end);
            match item.task {
                Task::Pause => {
                    assert!((0.5..=1.5).contains(&length), "pause of {length} s");
                    // The pause lies between two segments of the same sentence.
                    assert!(user.segments.iter().any(|s| s.end == item.start));
                    assert!(user.segments.iter().any(|s| s.start == item.end));
                    let next = user.segments.iter().find(|s| s.start == item.end).unwrap();
                    assert_eq!(item.window_end, Some(next.end));
                }
                Task::TurnTaking => {
                    let segment = user.segments.iter().find(|s| s.end == item.end).unwrap();
                    assert_eq!(segment.text, item.text);
                    // The silence after a question is at least 4 s (the script's range).
                    let window = user.seconds(item.window_end.unwrap() - item.end);
                    assert!(window >= 4.0 - 1e-9, "answer window {window} s");
                }
                Task::Interruption | Task::Backchannel => {
                    assert!(
                        user.segments
                            .iter()
                            .any(|s| s.start == item.start && s.end == item.end)
                    );
                    if let Some(expected) = item.expected_agent_onset {
                        // The first user event after `expect`: 1.5..3.0 s (interruption) or
                        // 1.0..2.0 s (back-channel) into the agent's expected speech.
                        let into = user.seconds(item.start - expected);
                        let range = if item.task == Task::Interruption {
                            1.5..=3.0
                        } else {
                            1.0..=2.0
                        };
                        assert!(range.contains(&into), "{:?} at {into} s", item.task);
                    }
                }
            }
        }
    }
    for task in Task::ALL {
        assert!(tasks_seen.contains(&task), "no {task:?} item");
    }
    assert_eq!(tasks_seen.iter().filter(|t| **t == Task::Pause).count(), 2);
    assert_eq!(
        tasks_seen
            .iter()
            .filter(|t| **t == Task::Backchannel)
            .count(),
        2
    );
}

#[test]
fn written_files_match_the_rendering() {
    let dir = scratch("written");
    let dialogues = sample_dialogues();
    let manifest = generate::generate_set(&dialogues[1..2], 9, &Voices::default(), &dir).unwrap();
    assert_eq!(manifest.seed, 9);
    let (wav, json) = &generate::manifest_paths(&dir, &manifest)[0];
    let user = UserSegments::load(json).unwrap();
    let mono = audio::read_wav(wav).unwrap();
    assert_eq!(mono.sample_rate, 16_000);
    let samples: Vec<i16> = mono
        .samples
        .iter()
        .map(|s| (s * 32768.0).round() as i16)
        .collect();
    check_matches_audio(&samples, &user);
}

#[test]
fn rates_and_pitches_change_the_rendering() {
    let voice = Voices::default();
    let text = "How long does it take to boil an egg?";
    let render = |rate, pitch| {
        voice
            .render(
                text,
                &VoiceParams {
                    name: "en-us".into(),
                    rate,
                    pitch,
                },
            )
            .unwrap()
    };
    let slow = render(140, 50);
    let fast = render(200, 50);
    // Duration scales roughly with 1 / rate.
    let ratio = slow.len() as f64 / fast.len() as f64;
    assert!(
        (1.2..1.6).contains(&ratio),
        "slow/fast length ratio {ratio}"
    );
    assert_ne!(render(170, 30), render(170, 70));
}

#[test]
fn a_missing_voice_is_a_clear_error() {
    let err = EspeakNg::default()
        .render(
            "hello",
            &VoiceParams {
                name: "xx-nonexistent".into(),
                rate: 170,
                pitch: 50,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("voice does not exist"), "{err}");
}

/// The agent-speech detector run on the generated user sides (every built-in dialogue, espeak-ng
/// and Piper voices) finds each segment's onset and offset within one hop (10 ms) of the
/// sample-exact times in the JSON. Phrases are trimmed by the same detector, so this checks
/// that placing phrases into a dialogue changes nothing (measured: 0 samples everywhere).
#[test]
fn detector_finds_generated_speech_within_one_hop() {
    use duplexbench::detect::{DetectorConfig, detect_speech};
    let config = DetectorConfig::default();
    let hop = config.hop_samples(USER_SAMPLE_RATE) as i64;
    let voice = Voices::default();
    let mut worst = (0i64, 0i64);
    let mut count = 0;
    let mut engines = Vec::new();
    for dialogue in script::builtin_dialogues().unwrap() {
        let rendered = render_dialogue(&dialogue, 21, &voice).unwrap();
        engines.push(rendered.segments.voice.clone().unwrap().engine);
        let samples: Vec<f32> = rendered
            .samples
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        let found = detect_speech(&samples, USER_SAMPLE_RATE, &config);
        for segment in &rendered.segments.segments {
            let nearest = |errors: Vec<i64>| errors.into_iter().min_by_key(|e| e.abs()).unwrap();
            let onset_error = nearest(
                found
                    .iter()
                    .map(|i| i.start as i64 - segment.start as i64)
                    .collect(),
            );
            let offset_error = nearest(
                found
                    .iter()
                    .map(|i| i.end as i64 - segment.end as i64)
                    .collect(),
            );
            assert!(
                onset_error.abs() <= hop && offset_error.abs() <= hop,
                "{}: `{}` onset error {onset_error}, offset error {offset_error} samples",
                dialogue.id,
                segment.text
            );
            worst.0 = worst.0.max(onset_error.abs());
            worst.1 = worst.1.max(offset_error.abs());
            count += 1;
        }
    }
    assert!(count >= 50);
    // Both engines are covered: the built-in set draws Piper and espeak-ng voices.
    assert!(engines.iter().any(|e| e == "piper"), "{engines:?}");
    assert!(
        engines.iter().filter(|e| *e == "espeak-ng").count() >= 12,
        "{engines:?}"
    );
    eprintln!(
        "detector vs {count} generated segments: worst onset error {} samples, worst offset error {} samples",
        worst.0, worst.1
    );
}

/// The Piper voice (the model cache's en_US-joe-medium, through ort): reproducible (no noise
/// draw, one thread), its rate changes the length, pitch is not used, and its phrases are
/// trimmed like espeak-ng's.
#[test]
fn piper_voice_is_reproducible_and_follows_the_rate() {
    let text = "Can you tell me what time the museum opens on Sundays?";
    let params = |rate, pitch| VoiceParams {
        name: "piper:en_US-joe-medium".into(),
        rate,
        pitch,
    };
    let first = Voices::default();
    let second = Voices::default();
    assert_eq!(first.engine("piper:en_US-joe-medium"), "piper");
    assert!(!first.uses_pitch("piper:en_US-joe-medium"));
    let a = first.render(text, &params(170, 50)).unwrap();
    let b = second.render(text, &params(170, 50)).unwrap();
    assert_eq!(a, b, "two loads, two renderings: different samples");
    assert_eq!(
        first.render(text, &params(170, 20)).unwrap(),
        a,
        "pitch is not used"
    );
    let seconds = a.len() as f64 / 16_000.0;
    assert!((2.0..5.0).contains(&seconds), "{seconds} s");
    let slow = first.render(text, &params(140, 50)).unwrap();
    let fast = first.render(text, &params(200, 50)).unwrap();
    // Length scale 200/140 = 1.43; the durations are rounded up per phoneme, so the phrase
    // stretches less (measured 1.18).
    let ratio = slow.len() as f64 / fast.len() as f64;
    assert!((1.1..1.5).contains(&ratio), "slow/fast {ratio}");
    assert!(a[0].unsigned_abs() >= TRIM_THRESHOLD as u16);
    assert!(a[a.len() - 1].unsigned_abs() >= TRIM_THRESHOLD as u16);
    let err = first
        .render(text, &params_named("piper:no-such-voice"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-voice"), "{err}");
}

fn params_named(name: &str) -> VoiceParams {
    VoiceParams {
        name: name.into(),
        rate: 170,
        pitch: 50,
    }
}
