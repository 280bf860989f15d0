//! `duplexbench`: generate scripted user dialogues, score an agent's recorded output.
//! See `duplexbench/README.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use duplexbench::audio;
use duplexbench::decisions;
use duplexbench::detect::DetectorConfig;
use duplexbench::generate;
use duplexbench::plot;
use duplexbench::score::{self, DialogueInput, Rules, Word};
use duplexbench::script::{self, Dialogue};
use duplexbench::segments::UserSegments;
use duplexbench::voice::Voices;

const USAGE: &str = "\
usage:
  duplexbench generate --seed N --out DIR [--dialogues PATH]... [--only ID]... [--list]
  duplexbench check --user-wav U.wav --user-segments U.json [--tolerance-ms MS]
  duplexbench score --user-segments X.json --agent A.wav [--decisions D.jsonl]
                    [--agent-words W.json] [--baseline-agent B.wav [--baseline-decisions E.jsonl]]
                    --out DIR [--label NAME] [--baseline-label NAME] [--no-plots]
                    [--on-db DB] [--off-db DB] [--hop-ms MS] [--min-silence-ms MS]
                    [--min-speech-ms MS] [--edge-gap-ms MS]
  duplexbench run (--set DIR | --user-wav U.wav --user-segments U.json) --out DIR
                  [--config default|silence|both] [--max-tokens N] [--sidecar-threads N]

generate renders the user side of each dialogue (built-in scripts, or the script files /
directories given with --dialogues) into DIR/<id>.wav (16 kHz mono) and DIR/<id>.json (user
segments), plus DIR/manifest.json. The same seed gives bit-identical files.

check runs the scorer's speech detector on a user WAV and compares it with its segments JSON
(for users who write the JSON for their own recordings): each boundary within --tolerance-ms
(default 20) of a detected one, and no speech outside the segments; exits non-zero otherwise.

score reads one or more dialogues: give --user-segments and --agent once per dialogue, in the
same order (--decisions, --agent-words and --baseline-agent either never or once per
dialogue). It writes DIR/results.json, DIR/results.txt, DIR/timeline-<label>-<dialogue>.png
and DIR/latency-histogram.png, and prints the table.

run plays every dialogue of a generated set (DIR/manifest.json), or one recording of a user side
(16 kHz mono WAV) with its segments JSON, live, at real-time pace, through
the whole agent (microturnmux, interactionmodel, speechsynth, reasoningsidecar), once per
configuration (default: the default model package; silence: turn-detection=silence
silence-ms=500; both, the default, runs both), records into --out <id>.<label>.agent.wav,
.stereo.wav (user left, agent right), .decisions.jsonl and .captions.srt, then scores and
draws exactly as score does.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("generate") => run_generate(&args[1..]),
        Some("score") => run_score(&args[1..]),
        Some("check") => run_check(&args[1..]),
        Some("run") => run_live(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("duplexbench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` options (repeatable) and `--flag` switches.
struct Options {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Options {
    fn parse(
        args: &[String],
        value_options: &[&str],
        flag_options: &[&str],
    ) -> Result<Self, String> {
        let mut values = Vec::new();
        let mut flags = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg.as_str();
            if value_options.contains(&name) {
                let value = iter
                    .next()
                    .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
                values.push((name.to_owned(), value.clone()));
            } else if flag_options.contains(&name) {
                flags.push(name.to_owned());
            } else {
                return Err(format!("unknown argument `{arg}`\n{USAGE}"));
            }
        }
        Ok(Self { values, flags })
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(format!("{name} given more than once")),
        }
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.one(name)?
            .ok_or_else(|| format!("{name} is required\n{USAGE}"))
    }

    fn number(&self, name: &str, default: f64) -> Result<f64, String> {
        match self.one(name)? {
            None => Ok(default),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{name}: `{text}` is not a number")),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn load_scripts(paths: &[&str]) -> Result<Vec<Dialogue>, String> {
    if paths.is_empty() {
        return script::builtin_dialogues().map_err(|e| e.to_string());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let path = Path::new(path);
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.to_owned());
        }
    }
    let mut dialogues: Vec<Dialogue> = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for dialogue in
            script::parse_script(&file.display().to_string(), &text).map_err(|e| e.to_string())?
        {
            if dialogues.iter().any(|d| d.id == dialogue.id) {
                return Err(format!(
                    "{}: dialogue `{}` is defined in two files",
                    file.display(),
                    dialogue.id
                ));
            }
            dialogues.push(dialogue);
        }
    }
    Ok(dialogues)
}

fn run_generate(args: &[String]) -> Result<(), String> {
    let options = Options::parse(
        args,
        &["--seed", "--out", "--dialogues", "--only"],
        &["--list"],
    )?;
    let mut dialogues = load_scripts(&options.all("--dialogues"))?;
    let only = options.all("--only");
    if !only.is_empty() {
        if let Some(missing) = only
            .iter()
            .find(|id| !dialogues.iter().any(|d| d.id == **id))
        {
            return Err(format!("--only: no dialogue `{missing}`"));
        }
        dialogues.retain(|d| only.contains(&d.id.as_str()));
    }
    if options.flag("--list") {
        for dialogue in &dialogues {
            println!("{}\t{}", dialogue.id, dialogue.task);
        }
        return Ok(());
    }
    let seed_text = options.required("--seed")?;
    let seed: u64 = seed_text
        .parse()
        .map_err(|_| format!("--seed: `{seed_text}` is not an integer >= 0"))?;
    let out = Path::new(options.required("--out")?);
    let manifest = generate::generate_set(&dialogues, seed, &Voices::default(), out)
        .map_err(|e| e.to_string())?;
    println!(
        "generated {} dialogues with seed {seed} into {}",
        manifest.dialogues.len(),
        out.display()
    );
    Ok(())
}

fn run_check(args: &[String]) -> Result<(), String> {
    let options = Options::parse(
        args,
        &["--user-wav", "--user-segments", "--tolerance-ms"],
        &[],
    )?;
    let user = UserSegments::load(Path::new(options.required("--user-segments")?))
        .map_err(|e| e.to_string())?;
    let wav_path = options.required("--user-wav")?;
    let wav = audio::read_wav(Path::new(wav_path)).map_err(|e| e.to_string())?;
    let tolerance = options.number("--tolerance-ms", 20.0)?;
    if tolerance < 0.0 {
        return Err("--tolerance-ms must be >= 0".into());
    }
    let report = duplexbench::check::check(&user, &wav, &DetectorConfig::default(), tolerance)
        .map_err(|e| format!("{wav_path}: {e}"))?;
    print!("{}", duplexbench::check::report_text(&report));
    if report.ok {
        Ok(())
    } else {
        Err("the segments do not match the audio".into())
    }
}

fn load_words(path: &str) -> Result<Vec<Word>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut words: Vec<Word> =
        serde_json::from_str(&text).map_err(|e| format!("{path}: not a words JSON: {e}"))?;
    if words
        .iter()
        .any(|w| !(w.start.is_finite() && w.end.is_finite() && w.end >= w.start))
    {
        return Err(format!("{path}: every word needs finite start <= end"));
    }
    words.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok(words)
}

fn run_score(args: &[String]) -> Result<(), String> {
    let options = Options::parse(
        args,
        &[
            "--user-segments",
            "--agent",
            "--decisions",
            "--agent-words",
            "--baseline-agent",
            "--baseline-decisions",
            "--out",
            "--label",
            "--baseline-label",
            "--on-db",
            "--off-db",
            "--hop-ms",
            "--min-silence-ms",
            "--min-speech-ms",
            "--edge-gap-ms",
        ],
        &["--no-plots"],
    )?;
    let defaults = DetectorConfig::default();
    let detector = DetectorConfig {
        hop_ms: options.number("--hop-ms", defaults.hop_ms)?,
        on_db: options.number("--on-db", defaults.on_db)?,
        off_db: options.number("--off-db", defaults.off_db)?,
        min_silence_ms: options.number("--min-silence-ms", defaults.min_silence_ms)?,
        min_speech_ms: options.number("--min-speech-ms", defaults.min_speech_ms)?,
        edge_gap_ms: options.number("--edge-gap-ms", defaults.edge_gap_ms)?,
    };
    detector.validate()?;
    let rules = Rules::default();
    let out = Path::new(options.required("--out")?);

    let segment_paths = options.all("--user-segments");
    let agents = options.all("--agent");
    if segment_paths.is_empty() {
        return Err(format!("--user-segments is required\n{USAGE}"));
    }
    let per_dialogue = |name: &str, given: &[&str], required: bool| -> Result<(), String> {
        if (required || !given.is_empty()) && given.len() != segment_paths.len() {
            return Err(format!(
                "{name} given {} times for {} --user-segments (give it once per dialogue, in order)",
                given.len(),
                segment_paths.len()
            ));
        }
        Ok(())
    };
    per_dialogue("--agent", &agents, true)?;
    let decision_paths = options.all("--decisions");
    per_dialogue("--decisions", &decision_paths, false)?;
    let word_paths = options.all("--agent-words");
    per_dialogue("--agent-words", &word_paths, false)?;
    let baseline_agents = options.all("--baseline-agent");
    per_dialogue("--baseline-agent", &baseline_agents, false)?;
    let baseline_decisions = options.all("--baseline-decisions");
    per_dialogue("--baseline-decisions", &baseline_decisions, false)?;
    if !baseline_decisions.is_empty() && baseline_agents.is_empty() {
        return Err("--baseline-decisions needs --baseline-agent".into());
    }

    let user_sides: Vec<UserSegments> = segment_paths
        .iter()
        .map(|p| UserSegments::load(Path::new(p)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;

    let build_inputs = |agent_paths: &[&str],
                        decision_paths: &[&str],
                        word_paths: &[&str]|
     -> Result<Vec<DialogueInput>, String> {
        user_sides
            .iter()
            .enumerate()
            .map(|(index, segments)| {
                let agent_path = agent_paths[index];
                let agent = audio::read_wav(Path::new(agent_path)).map_err(|e| e.to_string())?;
                let decisions = match decision_paths.get(index) {
                    Some(path) => {
                        decisions::load_decisions(Path::new(path)).map_err(|e| e.to_string())?
                    }
                    None => Vec::new(),
                };
                let words = word_paths.get(index).map(|p| load_words(p)).transpose()?;
                Ok(DialogueInput {
                    segments: segments.clone(),
                    agent,
                    agent_source: agent_path.to_owned(),
                    decisions,
                    words,
                })
            })
            .collect()
    };

    let label = options.one("--label")?.unwrap_or("default");
    let baseline_label = options.one("--baseline-label")?.unwrap_or("silence-500ms");
    if !baseline_agents.is_empty() && label == baseline_label {
        return Err("--label and --baseline-label must differ".into());
    }
    let mut configurations = vec![score::score_configuration(
        label,
        &build_inputs(&agents, &decision_paths, &word_paths)?,
        &detector,
        &rules,
    )];
    if !baseline_agents.is_empty() {
        configurations.push(score::score_configuration(
            baseline_label,
            &build_inputs(&baseline_agents, &baseline_decisions, &[])?,
            &detector,
            &rules,
        ));
    }
    let results = score::results(configurations, detector, rules);

    // Both configurations scored the same user side.
    let sides = vec![user_sides; results.configurations.len()];
    write_outputs(out, &results, &sides, !options.flag("--no-plots"))
}

/// Writes `results.json`, `results.txt` (also printed) and, with `plots`, the pictures.
fn write_outputs(
    out: &Path,
    results: &score::Results,
    user_sides: &[Vec<UserSegments>],
    plots: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    generate::write_json(&out.join("results.json"), results).map_err(|e| e.to_string())?;
    let table = score::text_table(results);
    std::fs::write(out.join("results.txt"), &table)
        .map_err(|e| format!("{}: {e}", out.join("results.txt").display()))?;
    print!("{table}");
    for configuration in &results.configurations {
        for dialogue in &configuration.dialogues {
            for warning in &dialogue.warnings {
                eprintln!(
                    "warning: {} / {}: {warning}",
                    configuration.label, dialogue.dialogue
                );
            }
        }
    }

    if plots {
        for (configuration, sides) in results.configurations.iter().zip(user_sides) {
            for (dialogue, user) in configuration.dialogues.iter().zip(sides) {
                let file = out.join(format!(
                    "timeline-{}-{}.png",
                    file_safe(&configuration.label),
                    file_safe(&dialogue.dialogue)
                ));
                plot::draw_timeline(
                    &file,
                    &format!("{}: {}", configuration.label, dialogue.dialogue),
                    user,
                    dialogue,
                )
                .map_err(|e| e.to_string())?;
            }
        }
        plot::draw_latency_histogram(&out.join("latency-histogram.png"), &results.configurations)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `max-tokens` of the sidecar in dialogues with interruptions or back-channels: SmolLM2's
/// 24-token answers last 1–2 s of speech, shorter than the 1.5–3 s the scripts put the user's
/// interruption into the answer.
const LONG_ANSWER_TOKENS: u32 = 64;

fn run_live(args: &[String]) -> Result<(), String> {
    use duplexbench::live::{Config, GstAgent};
    use duplexbench::runner::AgentUnderTest;
    let options = Options::parse(
        args,
        &[
            "--set",
            "--user-wav",
            "--user-segments",
            "--out",
            "--config",
            "--max-tokens",
            "--sidecar-threads",
        ],
        &[],
    )?;
    let out = Path::new(options.required("--out")?);
    let configs = match options.one("--config")?.unwrap_or("both") {
        "default" => vec![Config::Default],
        "silence" => vec![Config::Silence500],
        "both" => vec![Config::Default, Config::Silence500],
        other => {
            return Err(format!(
                "--config: `{other}` is not default, silence or both"
            ));
        }
    };
    let max_tokens = options.number("--max-tokens", 24.0)?;
    if !(1.0..=4096.0).contains(&max_tokens) {
        return Err("--max-tokens must be 1..4096".into());
    }
    let sidecar_threads = options.number("--sidecar-threads", 0.0)?;
    if !(0.0..=256.0).contains(&sidecar_threads) || sidecar_threads.fract() != 0.0 {
        return Err(
            "--sidecar-threads must be a whole number 0..256 (0: the element's default)".into(),
        );
    }
    // A generated set, or one recording of a user side with its segments JSON.
    let entries = match (
        options.one("--set")?,
        options.one("--user-wav")?,
        options.one("--user-segments")?,
    ) {
        (Some(set), None, None) => {
            duplexbench::live::load_set(Path::new(set)).map_err(|e| e.to_string())?
        }
        (None, Some(wav), Some(json)) => vec![duplexbench::live::SetEntry {
            wav: Path::new(wav).to_path_buf(),
            segments: UserSegments::load(Path::new(json)).map_err(|e| e.to_string())?,
        }],
        _ => {
            return Err(
                "run needs either --set DIR or both --user-wav U.wav and --user-segments U.json"
                    .into(),
            );
        }
    };
    // A generated set cues its interruptions and back-channels on the agent's live output; a
    // user's own recording plays exactly as recorded.
    let cued = options.one("--set")?.is_some();
    let mut user_sides: Vec<Vec<UserSegments>> = Vec::new();
    let rules = Rules::default();
    let detector = DetectorConfig::default();
    let mut configurations = Vec::new();
    for config in configs {
        let mut agent = GstAgent::new(config);
        agent.max_tokens = max_tokens as u32;
        agent.sidecar_threads = sidecar_threads as u32;
        agent.verbose = true;
        agent.cued = cued;
        let mut inputs = Vec::new();
        let mut played = Vec::new();
        for entry in &entries {
            // An interruption or a back-channel needs an answer long enough to talk over.
            let cued_items = cued
                && entry.segments.items.iter().any(|i| {
                    matches!(
                        i.task,
                        duplexbench::segments::Task::Interruption
                            | duplexbench::segments::Task::Backchannel
                    )
                });
            agent.max_tokens = if cued_items {
                (max_tokens as u32).max(LONG_ANSWER_TOKENS)
            } else {
                max_tokens as u32
            };
            let recording = agent
                .run(&entry.wav, &entry.segments, out)
                .map_err(|e| format!("{} / {}: {e}", agent.label(), entry.segments.dialogue))?;
            let audio = audio::read_wav(&recording.agent_wav).map_err(|e| e.to_string())?;
            let decisions = match &recording.decisions {
                Some(path) => decisions::load_decisions(path).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            played.push(recording.user.clone());
            inputs.push(DialogueInput {
                segments: recording.user,
                agent: audio,
                agent_source: recording.agent_wav.display().to_string(),
                decisions,
                words: None,
            });
        }
        user_sides.push(played);
        configurations.push(score::score_configuration(
            agent.label(),
            &inputs,
            &detector,
            &rules,
        ));
    }
    let results = score::results(configurations, detector, rules);
    write_outputs(out, &results, &user_sides, true)
}
