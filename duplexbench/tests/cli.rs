//! The `duplexbench` binary end to end: generate a dialogue per task with espeak-ng, build two
//! agent recordings from real espeak-ng speech placed at chosen sample offsets (a faster
//! "default" and a slower "baseline"), score both, and check the numbers, the files and the
//! pictures. Expected latencies are known from the placement: onsets within one detection hop
//! (10 ms = 160 samples, the stated bound for speech that starts softly), stops exact to the
//! sample (the recordings are cut right after a loud sample).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::HOP;
use duplexbench::audio;
use duplexbench::generate;
use duplexbench::script;
use duplexbench::segments::{Task, UserSegments};
use duplexbench::voice::{EspeakNg, UserVoice, VoiceParams, Voices};

const BIN: &str = env!("CARGO_BIN_EXE_duplexbench");

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("duplexbench-cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .output()
        .expect("run duplexbench");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How a simulated agent behaves.
struct Behaviour {
    /// Answer onset after a complete user turn (seconds).
    latency: f64,
    /// Audio silent this long after a barge-in onset (seconds).
    stop_after: f64,
    /// Takes over in pauses longer than this (seconds), `None` for never.
    pause_patience: Option<f64>,
}

struct Agent {
    samples: Vec<i16>,
    /// (sample, decision kind)
    decisions: Vec<(u64, &'static str)>,
    /// Where each credited answer was placed.
    answer_onsets: Vec<u64>,
    /// Where the audio was cut after barge-ins (one past the last sample).
    cuts: Vec<u64>,
}

fn speech(voice: &EspeakNg, text: &str) -> Vec<i16> {
    voice
        .render(
            text,
            &VoiceParams {
                name: "en-gb+m3".into(),
                rate: 175,
                pitch: 45,
            },
        )
        .unwrap()
}

fn place(into: &mut Vec<i16>, at: u64, phrase: &[i16]) {
    let end = at as usize + phrase.len();
    if into.len() < end {
        into.resize(end, 0);
    }
    into[at as usize..end].copy_from_slice(phrase);
}

fn simulate(user: &UserSegments, behaviour: &Behaviour) -> Agent {
    let voice = EspeakNg::default();
    let answer = speech(
        &voice,
        "Sure. Let me think about that for a moment, and then I will tell you.",
    );
    let mut long = speech(
        &voice,
        "Well, it is a long story, and it starts a very long time ago, when people first \
         began to wonder about it, and then, over many years, things changed a great deal.",
    );
    long.truncate(long.len().min(9 * 16_000));
    let rate = f64::from(user.sample_rate);
    let at = |seconds: f64| (seconds * rate).round() as u64;
    let mut agent = Agent {
        samples: vec![0; user.num_samples as usize],
        decisions: Vec::new(),
        answer_onsets: Vec::new(),
        cuts: Vec::new(),
    };
    for item in &user.items {
        match item.task {
            Task::TurnTaking => {
                let onset = item.end + at(behaviour.latency);
                place(&mut agent.samples, onset, &answer);
                agent.answer_onsets.push(onset);
                agent.decisions.push((item.end, "user-turn-ended"));
                agent.decisions.push((onset, "agent-started"));
            }
            Task::Pause => {
                if let Some(patience) = behaviour.pause_patience
                    && user.seconds(item.end - item.start) > patience
                {
                    let onset = item.start + at(patience);
                    place(&mut agent.samples, onset, &answer);
                    agent.decisions.push((onset, "agent-started"));
                }
            }
            Task::Interruption => {
                let start = item.expected_agent_onset.unwrap();
                place(&mut agent.samples, start, &long);
                // Cut right after the first loud sample past the intended stop.
                let mut cut = (item.start + at(behaviour.stop_after)) as usize;
                while agent.samples[cut].unsigned_abs() < 1000 {
                    cut += 1;
                }
                let cut = cut + 1;
                let tail_end = (start as usize + long.len()).min(agent.samples.len());
                agent.samples[cut..tail_end].iter_mut().for_each(|s| *s = 0);
                agent.cuts.push(cut as u64);
                agent.decisions.push((item.start, "barge-in"));
                agent.decisions.push((cut as u64, "agent-yielded"));
                let onset = item.end + at(behaviour.latency);
                place(&mut agent.samples, onset, &answer);
                agent.answer_onsets.push(onset);
            }
            Task::Backchannel => {
                if let Some(expected) = item.expected_agent_onset {
                    place(&mut agent.samples, expected, &long);
                }
                agent.decisions.push((item.start, "backchannel-heard"));
            }
        }
    }
    agent.samples.resize(user.num_samples as usize, 0);
    agent
}

fn json_number(value: &serde_json::Value, path: &[&str]) -> Option<f64> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_f64()
}

fn png_check(path: &Path, width: u32, height: u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(
        (info.width, info.height),
        (width, height),
        "{}",
        path.display()
    );
    let pixels = &buffer[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut colours: Vec<&[u8]> = pixels.chunks(channels).collect();
    colours.sort();
    colours.dedup();
    assert!(
        colours.len() >= 8,
        "{}: only {} colours",
        path.display(),
        colours.len()
    );
    let white = pixels
        .chunks(channels)
        .filter(|p| p.iter().all(|&c| c == 255))
        .count();
    let share = white as f64 / (info.width * info.height) as f64;
    assert!(share < 0.98, "{}: {share:.3} white", path.display());
}

#[test]
fn generate_then_score_two_configurations() {
    let dir = scratch("e2e");
    let ids = ["turn-02", "pause-03", "interrupt-01", "backchannel-02"];
    let mut args = vec!["generate", "--seed", "11", "--out"];
    let dir_text = dir.to_str().unwrap().to_owned();
    args.push(&dir_text);
    for id in ids {
        args.extend(["--only", id]);
    }
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("generated 4 dialogues with seed 11"),
        "{stdout}"
    );

    let default = Behaviour {
        latency: 0.45,
        stop_after: 0.2,
        pause_patience: None,
    };
    let baseline = Behaviour {
        latency: 0.8,
        stop_after: 0.6,
        pause_patience: Some(0.8),
    };
    let mut score_args: Vec<String> = vec!["score".into()];
    let mut expected_default_onsets = Vec::new();
    let mut expected_cuts = Vec::new();
    let mut pauses = (0usize, 0usize);
    for id in ids {
        let segments_path = dir.join(format!("{id}.json"));
        let user = UserSegments::load(&segments_path).unwrap();
        for item in user.items.iter().filter(|i| i.task == Task::Pause) {
            pauses.0 += 1;
            if user.seconds(item.end - item.start) > 0.8 {
                pauses.1 += 1;
            }
        }
        for (label, behaviour) in [("default", &default), ("baseline", &baseline)] {
            let agent = simulate(&user, behaviour);
            if label == "default" {
                expected_default_onsets.extend(
                    user.items
                        .iter()
                        .filter(|i| i.task == Task::TurnTaking)
                        .map(|i| (i.end, agent.answer_onsets[0..].to_vec())),
                );
                expected_cuts.extend(
                    user.items
                        .iter()
                        .filter(|i| i.task == Task::Interruption)
                        .zip(&agent.cuts)
                        .map(|(i, &cut)| (i.start, cut)),
                );
            }
            let wav = dir.join(format!("{id}.{label}.wav"));
            audio::write_wav_i16(&wav, &agent.samples, user.sample_rate).unwrap();
            let jsonl = dir.join(format!("{id}.{label}.jsonl"));
            let lines: String = agent
                .decisions
                .iter()
                .map(|(sample, kind)| {
                    format!(
                        "{{\"kind\":\"{kind}\",\"time_s\":{}}}\n",
                        user.seconds(*sample)
                    )
                })
                .collect();
            std::fs::write(&jsonl, lines).unwrap();
        }
        score_args.extend([
            "--user-segments".into(),
            segments_path.display().to_string(),
            "--agent".into(),
            dir.join(format!("{id}.default.wav")).display().to_string(),
            "--decisions".into(),
            dir.join(format!("{id}.default.jsonl"))
                .display()
                .to_string(),
            "--baseline-agent".into(),
            dir.join(format!("{id}.baseline.wav")).display().to_string(),
            "--baseline-decisions".into(),
            dir.join(format!("{id}.baseline.jsonl"))
                .display()
                .to_string(),
        ]);
    }
    let out = dir.join("scored");
    score_args.extend(["--out".into(), out.display().to_string()]);
    let score_args: Vec<&str> = score_args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = run(&score_args);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("results.txt")).unwrap(),
        stdout
    );
    assert!(stdout.contains("default/silence-500ms"), "{stdout}");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["schema"], "duplexbench.results/1");
    let configurations = results["configurations"].as_array().unwrap();
    assert_eq!(configurations.len(), 2);
    let summary = |c: usize| &configurations[c]["summary"];
    let hop_s = HOP as f64 / 16_000.0;

    // Turn-taking: turn-02 has two questions.
    for (c, latency) in [(0, 0.45), (1, 0.8)] {
        let tt = &summary(c)["turn_taking"];
        assert_eq!(tt["items"], 2);
        assert_eq!(tt["take_over_rate"], 1.0);
        // The agent's phrases are trimmed at the detector's level, so onsets come out exact
        // (the stated bound is one hop; measured: 0 samples).
        for key in ["median", "p95", "min", "max"] {
            let value = json_number(tt, &["latency_s", key]).unwrap();
            assert!(
                (value - latency).abs() < 1e-9,
                "config {c} latency {key} {value} vs {latency}"
            );
        }
    }
    // Each default turn-taking latency, item by item.
    let items: Vec<&serde_json::Value> = configurations[0]["dialogues"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["items"].as_array().unwrap())
        .collect();
    let turn_latencies: Vec<f64> = items
        .iter()
        .filter(|i| i["task"] == "turn-taking")
        .map(|i| i["latency_s"].as_f64().unwrap())
        .collect();
    assert_eq!(turn_latencies.len(), expected_default_onsets.len());
    // Barge-in stops are exact to the sample.
    let stops: Vec<f64> = items
        .iter()
        .filter(|i| i["task"] == "interruption")
        .map(|i| i["stop_latency_s"].as_f64().unwrap())
        .collect();
    assert_eq!(stops.len(), expected_cuts.len());
    for (stop, (onset, cut)) in stops.iter().zip(&expected_cuts) {
        let expected = (cut - onset) as f64 / 16_000.0;
        assert!((stop - expected).abs() < 1e-9, "stop {stop} vs {expected}");
        assert!((0.2..0.25).contains(stop), "{stop}");
    }
    let interruption = &summary(0)["interruption"];
    assert_eq!(interruption["applicable"], 1);
    assert_eq!(interruption["stop_rate"], 1.0);
    assert_eq!(interruption["response_rate"], 1.0);
    let response = json_number(interruption, &["response_latency_s", "median"]).unwrap();
    assert!(
        response >= 0.45 - 1e-9 && response <= 0.45 + hop_s,
        "{response}"
    );
    // The baseline's cut comes 0.6 s after the onset, but its speech may already have gone
    // silent at a comma before that: the audio decides.
    let baseline_stop = json_number(&summary(1)["interruption"], &["stop_latency_s", "median"]);
    assert!(
        (0.3..0.62).contains(&baseline_stop.unwrap()),
        "{baseline_stop:?}"
    );

    // Pauses: the default never takes over; the baseline takes over in pauses > 0.8 s.
    assert_eq!(pauses.0, 2);
    assert_eq!(summary(0)["pause"]["take_overs"], 0);
    assert_eq!(summary(1)["pause"]["take_overs"], pauses.1);
    // Back-channels: the agent keeps talking through both.
    assert_eq!(summary(0)["backchannel"]["applicable"], 2);
    assert_eq!(summary(0)["backchannel"]["false_stop_rate"], 0.0);
    assert_eq!(summary(0)["decisions"]["agent-started"], 2);
    assert_eq!(summary(1)["decisions"]["agent-started"], 2 + pauses.1);

    // Ratios of the default over the baseline.
    let ratio = results["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "turn-taking latency p50 (s)")
        .unwrap()["value"]
        .as_f64()
        .unwrap();
    assert!(
        (0.45 / (0.8 + hop_s)..=(0.45 + hop_s) / 0.8).contains(&ratio),
        "{ratio}"
    );

    // Pictures.
    for label in ["default", "silence-500ms"] {
        for id in ids {
            png_check(&out.join(format!("timeline-{label}-{id}.png")), 1600, 480);
        }
    }
    png_check(&out.join("latency-histogram.png"), 1600, 560);
}

#[test]
fn generate_lists_and_rejects_bad_arguments() {
    let (ok, stdout, _) = run(&["generate", "--list"]);
    assert!(ok);
    let builtin = script::builtin_dialogues().unwrap();
    assert_eq!(stdout.lines().count(), builtin.len());
    assert!(stdout.contains("pause-01\tpause"));

    let dir = scratch("errors");
    let out = dir.to_str().unwrap();

    // A script of one's own.
    let script = dir.join("mine.txt");
    std::fs::write(
        &script,
        "voice en-us\nrate 170\npitch 50\ndialogue mine-1\ntask turn-taking\nsilence 0.25\n\
         ask Is it raining?\nsilence 2\n",
    )
    .unwrap();
    let own = dir.join("own");
    let (ok, _, stderr) = run(&[
        "generate",
        "--seed",
        "3",
        "--out",
        own.to_str().unwrap(),
        "--dialogues",
        script.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let user = UserSegments::load(&own.join("mine-1.json")).unwrap();
    assert_eq!(user.segments.len(), 1);
    assert_eq!(user.segments[0].start, 4_000, "0.25 s of leading silence");
    assert_eq!(user.num_samples, user.segments[0].end + 32_000, "2 s after");
    assert_eq!(user.items[0].task, Task::TurnTaking);
    // A script error names the file and line.
    std::fs::write(&script, "dialogue x\nsay hi\npause soon\n").unwrap();
    let (ok, _, stderr) = run(&[
        "generate",
        "--seed",
        "3",
        "--out",
        own.to_str().unwrap(),
        "--dialogues",
        script.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("mine.txt:3: `soon` is not a number"),
        "{stderr}"
    );

    for (args, needle) in [
        (
            vec!["generate", "--seed", "x", "--out", out],
            "not an integer",
        ),
        (vec!["generate", "--out", out], "--seed is required"),
        (
            vec!["generate", "--seed", "1", "--out", out, "--only", "nope"],
            "no dialogue `nope`",
        ),
        (vec!["generate", "--frob"], "unknown argument `--frob`"),
        (vec!["frob"], "expected a command"),
        (vec!["score", "--out", out], "--user-segments is required"),
    ]
    .into_iter()
    .chain(["1.5", "300", "-1"].map(|threads| {
        (
            vec![
                "run",
                "--set",
                out,
                "--out",
                out,
                "--sidecar-threads",
                threads,
            ],
            "--sidecar-threads must be a whole number 0..256",
        )
    })) {
        let (ok, _, stderr) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn score_rejects_bad_inputs_with_clear_messages() {
    let dir = scratch("bad-inputs");
    let voice = Voices::default();
    let dialogue = script::builtin_dialogues()
        .unwrap()
        .into_iter()
        .find(|d| d.id == "turn-03")
        .unwrap();
    let rendered = generate::render_dialogue(&dialogue, 1, &voice).unwrap();
    let good = dir.join("good.json");
    generate::write_json(&good, &rendered.segments).unwrap();
    let agent = dir.join("agent.wav");
    audio::write_wav_i16(&agent, &rendered.samples, 16_000).unwrap();
    std::fs::write(dir.join("bad.json"), "{\"schema\": 3}").unwrap();
    let mut wrong_schema = rendered.segments.clone();
    wrong_schema.schema = "something-else/9".into();
    generate::write_json(&dir.join("schema.json"), &wrong_schema).unwrap();
    std::fs::write(dir.join("bad.jsonl"), "{\"kind\":\"x\"}\n").unwrap();
    std::fs::write(dir.join("not.wav"), "not a wav").unwrap();
    let p = |name: &str| dir.join(name).display().to_string();
    let out = p("out");
    let good = good.display().to_string();
    let agent = agent.display().to_string();
    for (args, needle) in [
        (
            vec!["score", "--user-segments", &good, "--out", &out],
            "--agent given 0 times",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &p("bad.json"),
                "--agent",
                &agent,
                "--out",
                &out,
            ],
            "not a user-segments JSON",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &p("schema.json"),
                "--agent",
                &agent,
                "--out",
                &out,
            ],
            "this tool reads `duplexbench.user-segments/1`",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &good,
                "--agent",
                &p("missing.wav"),
                "--out",
                &out,
            ],
            "missing.wav",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &good,
                "--agent",
                &p("not.wav"),
                "--out",
                &out,
            ],
            "not.wav",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &good,
                "--agent",
                &agent,
                "--decisions",
                &p("bad.jsonl"),
                "--out",
                &out,
            ],
            "bad.jsonl:1: needs `time_s`",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &good,
                "--agent",
                &agent,
                "--on-db",
                "-60",
                "--out",
                &out,
            ],
            "off level <= on level",
        ),
        (
            vec![
                "score",
                "--user-segments",
                &good,
                "--agent",
                &agent,
                "--hop-ms",
                "abc",
                "--out",
                &out,
            ],
            "not a number",
        ),
    ] {
        let (ok, _, stderr) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // `check`: the generated JSON matches its WAV; a shifted one does not.
    let user_wav = dir.join("user.wav");
    audio::write_wav_i16(&user_wav, &rendered.samples, 16_000).unwrap();
    let user_wav = user_wav.display().to_string();
    let (ok, stdout, stderr) = run(&["check", "--user-wav", &user_wav, "--user-segments", &good]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("onset +0.0 ms, offset +0.0 ms"), "{stdout}");
    assert!(stdout.contains("the segments match the audio"), "{stdout}");
    let mut shifted = rendered.segments.clone();
    shifted.segments[0].start += 800; // 50 ms late
    shifted.segments.remove(1); // and one spoken question left out
    shifted.items.clear();
    generate::write_json(&dir.join("shifted.json"), &shifted).unwrap();
    let (ok, stdout, _) = run(&[
        "check",
        "--user-wav",
        &user_wav,
        "--user-segments",
        &p("shifted.json"),
    ]);
    assert!(!ok);
    assert!(stdout.contains("onset -50.0 ms"), "{stdout}");
    assert!(stdout.contains("speech outside every segment"), "{stdout}");
    let (ok, _, stderr) = run(&[
        "check",
        "--user-wav",
        &agent,
        "--user-segments",
        &p("cut.json"),
    ]);
    assert!(!ok && stderr.contains("cut.json"), "{stderr}");

    // The user side scored as its own agent: the user's questions are "agent speech" starting
    // inside each turn, so the scorer runs and writes its files (no plots asked).
    let (ok, stdout, stderr) = run(&[
        "score",
        "--user-segments",
        &good,
        "--agent",
        &agent,
        "--no-plots",
        "--out",
        &out,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("take-over rate"), "{stdout}");
    assert!(Path::new(&out).join("results.json").exists());
    assert!(!Path::new(&out).join("latency-histogram.png").exists());
}
