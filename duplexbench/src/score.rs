//! The scorer: the agent's recorded output audio plus the user segments in, the
//! Full-Duplex-Bench v1 metrics out.
//!
//! Agent speech comes from the AUDIO (see [`crate::detect`]); decisions, when given, are only
//! drawn and counted. Every rule below is documented in `duplexbench/README.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audio::Mono;
use crate::decisions::Decision;
use crate::detect::{DetectorConfig, Interval, detect_speech};
use crate::segments::{Item, Task, UserSegments};

/// Scoring rules. Defaults follow Full-Duplex-Bench v1 where it defines a rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// Take-over: agent speech spanning less than this (seconds) is not a take-over
    /// (Full-Duplex-Bench v1: 1 s) ...
    pub take_over_min_s: f64,
    /// ... unless a transcript is given and it has more than this many words (v1: 3). Without
    /// a transcript the duration alone decides.
    pub take_over_max_words: usize,
    /// Interruption: the agent counts as having stopped when the speech it was producing at the
    /// user's onset ends within this many seconds of that onset.
    pub stop_window_s: f64,
    /// Back-channel: a false stop is agent speech (running at the back-channel's onset) that
    /// ends before the back-channel's offset plus this many seconds ...
    pub backchannel_stop_window_s: f64,
    /// ... and is followed by at least this much silence (so a breath between two sentences
    /// is not a stop).
    pub backchannel_stop_silence_s: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            take_over_min_s: 1.0,
            take_over_max_words: 3,
            stop_window_s: 2.0,
            backchannel_stop_window_s: 1.0,
            backchannel_stop_silence_s: 1.0,
        }
    }
}

/// A word of an optional agent transcript (seconds from the start of the agent recording).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

/// One dialogue's inputs.
#[derive(Debug, Clone)]
pub struct DialogueInput {
    pub segments: UserSegments,
    pub agent: Mono,
    /// Where the agent audio came from (for the results JSON).
    pub agent_source: String,
    pub decisions: Vec<Decision>,
    pub words: Option<Vec<Word>>,
}

/// Agent speech in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start_s: f64,
    pub end_s: f64,
}

impl Span {
    fn duration(&self) -> f64 {
        self.end_s - self.start_s
    }
}

/// The outcome of one item; fields not meaningful for the item's task are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub task: Task,
    pub start_s: f64,
    pub end_s: f64,
    pub window_end_s: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// turn-taking, pause: did the agent take the turn?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_over: Option<bool>,
    /// The first agent onset credited to the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_onset_s: Option<f64>,
    /// turn-taking: agent onset - user offset, clamped at 0 (only when take_over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_s: Option<f64>,
    /// interruption, backchannel: was the agent speaking at the user's onset?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicable: Option<bool>,
    /// interruption: did the agent stop within the stop window?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<bool>,
    /// interruption: user onset -> agent audio silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_latency_s: Option<f64>,
    /// interruption: did the agent then answer (a take-over after it stopped)?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<bool>,
    /// interruption: answer onset - user offset, clamped at 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_latency_s: Option<f64>,
    /// backchannel: did the back-channel make the agent stop?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_stop: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueResult {
    pub dialogue: String,
    pub agent_source: String,
    pub agent_sample_rate: u32,
    pub user_duration_s: f64,
    pub agent_duration_s: f64,
    pub agent_speech: Vec<Span>,
    pub items: Vec<ItemResult>,
    pub decisions: Vec<Decision>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Median, 95th percentile and friends of a set of values (linear interpolation between
/// order statistics, as numpy's default). All absent when `count` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub count: usize,
    pub median: Option<f64>,
    pub p95: Option<f64>,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The `p`-quantile (0..=1) of sorted values, linear interpolation.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let position = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    Some(sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64))
}

impl Stats {
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        Self {
            count,
            median: quantile(&sorted, 0.5),
            p95: quantile(&sorted, 0.95),
            mean: (count > 0).then(|| sorted.iter().sum::<f64>() / count as f64),
            min: sorted.first().copied(),
            max: sorted.last().copied(),
        }
    }
}

fn rate(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TurnTakingSummary {
    pub items: usize,
    pub take_overs: usize,
    pub take_over_rate: Option<f64>,
    pub latency_s: Stats,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PauseSummary {
    pub items: usize,
    pub take_overs: usize,
    pub take_over_rate: Option<f64>,
    /// Pauses with any agent speech onset in the window, take-over or not (a short agent
    /// back-channel in a pause counts here and not above).
    pub any_onsets: usize,
    pub any_onset_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InterruptionSummary {
    pub items: usize,
    pub applicable: usize,
    pub stops: usize,
    pub stop_rate: Option<f64>,
    pub stop_latency_s: Stats,
    pub responses: usize,
    pub response_rate: Option<f64>,
    pub response_latency_s: Stats,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BackchannelSummary {
    pub items: usize,
    pub applicable: usize,
    pub false_stops: usize,
    pub false_stop_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub dialogues: usize,
    pub turn_taking: TurnTakingSummary,
    pub pause: PauseSummary,
    pub interruption: InterruptionSummary,
    pub backchannel: BackchannelSummary,
    /// Decision bus messages per kind, over all dialogues.
    pub decisions: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub label: String,
    pub summary: Summary,
    pub dialogues: Vec<DialogueResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub metric: String,
    /// configurations[0] / configurations[1]; absent when either is absent or the divisor 0.
    pub value: Option<f64>,
}

pub const RESULTS_SCHEMA: &str = "duplexbench.results/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub detector: DetectorConfig,
    pub rules: Rules,
    pub configurations: Vec<Configuration>,
    /// Present when two configurations were scored: the first over the second, per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratios: Vec<Ratio>,
}

/// Full-Duplex-Bench v1's take-over rule over the agent speech credited to an item.
fn is_take_over(spans: &[Span], words: Option<&[Word]>, rules: &Rules) -> bool {
    match words {
        Some(words) => match (words.first(), words.last()) {
            (Some(first), Some(last)) => {
                last.end - first.start >= rules.take_over_min_s
                    || words.len() > rules.take_over_max_words
            }
            _ => false,
        },
        None => match (spans.first(), spans.last()) {
            (Some(first), Some(last)) => last.end_s - first.start_s >= rules.take_over_min_s,
            _ => false,
        },
    }
}

fn words_in(words: Option<&Vec<Word>>, from: f64, to: f64) -> Option<Vec<Word>> {
    words.map(|w| {
        w.iter()
            .filter(|word| word.start >= from && word.start < to)
            .cloned()
            .collect()
    })
}

/// Scores one dialogue.
pub fn score_dialogue(
    input: &DialogueInput,
    detector: &DetectorConfig,
    rules: &Rules,
) -> DialogueResult {
    let user = &input.segments;
    let agent_rate = input.agent.sample_rate.max(1);
    let intervals: Vec<Interval> = detect_speech(&input.agent.samples, agent_rate, detector);
    let speech: Vec<Span> = intervals
        .iter()
        .map(|i| Span {
            start_s: i.start as f64 / f64::from(agent_rate),
            end_s: i.end as f64 / f64::from(agent_rate),
        })
        .collect();
    let user_duration_s = user.seconds(user.num_samples);
    let agent_duration_s = input.agent.samples.len() as f64 / f64::from(agent_rate);
    let mut warnings = Vec::new();
    if agent_duration_s + 1e-9 < user_duration_s {
        warnings.push(format!(
            "the agent recording ({agent_duration_s:.3} s) is shorter than the user side \
             ({user_duration_s:.3} s): the rest counts as silence"
        ));
    }

    let end_of_recording = user_duration_s.max(agent_duration_s);
    let late = input
        .decisions
        .iter()
        .filter(|d| d.time_s > end_of_recording)
        .count();
    if late > 0 {
        warnings.push(format!(
            "{late} decision(s) after the end of the recording ({end_of_recording:.3} s): are \
             their times measured from the first sample of the recording?"
        ));
    }

    let items = user
        .items
        .iter()
        .map(|item| score_item(item, user, &speech, input.words.as_ref(), rules))
        .collect();

    DialogueResult {
        dialogue: user.dialogue.clone(),
        agent_source: input.agent_source.clone(),
        agent_sample_rate: agent_rate,
        user_duration_s,
        agent_duration_s,
        agent_speech: speech,
        items,
        decisions: input.decisions.clone(),
        warnings,
    }
}

fn score_item(
    item: &Item,
    user: &UserSegments,
    speech: &[Span],
    words: Option<&Vec<Word>>,
    rules: &Rules,
) -> ItemResult {
    let start = user.seconds(item.start);
    let end = user.seconds(item.end);
    let window_end = user.seconds(user.effective_window_end(item));
    let mut result = ItemResult {
        task: item.task,
        start_s: start,
        end_s: end,
        window_end_s: window_end,
        text: item.text.clone(),
        take_over: None,
        agent_onset_s: None,
        latency_s: None,
        applicable: None,
        stopped: None,
        stop_latency_s: None,
        response: None,
        response_latency_s: None,
        false_stop: None,
    };
    match item.task {
        Task::TurnTaking | Task::Pause => {
            let credited: Vec<Span> = speech
                .iter()
                .filter(|s| s.start_s >= start && s.start_s < window_end)
                // For a turn: a short agent sound inside the user's turn is the agent's own
                // back-channel, not its answer.
                .filter(|s| {
                    item.task != Task::TurnTaking
                        || s.end_s > end
                        || s.duration() >= rules.take_over_min_s
                })
                .copied()
                .collect();
            let credited_words = words_in(words, start, window_end);
            let take_over = is_take_over(&credited, credited_words.as_deref(), rules);
            result.take_over = Some(take_over);
            result.agent_onset_s = credited.first().map(|s| s.start_s);
            if item.task == Task::TurnTaking && take_over {
                result.latency_s = result.agent_onset_s.map(|onset| (onset - end).max(0.0));
            }
        }
        Task::Interruption | Task::Backchannel => {
            let active_index = speech
                .iter()
                .position(|s| s.start_s <= start && start < s.end_s);
            result.applicable = Some(active_index.is_some());
            let Some(active_index) = active_index else {
                return result;
            };
            let active = speech[active_index];
            let next = speech.get(active_index + 1);
            if item.task == Task::Interruption {
                let stopped = active.end_s <= start + rules.stop_window_s;
                result.stopped = Some(stopped);
                if stopped {
                    result.stop_latency_s = Some(active.end_s - start);
                    let answer: Vec<Span> = speech[active_index + 1..]
                        .iter()
                        .filter(|s| s.start_s < window_end)
                        .copied()
                        .collect();
                    let answer_words = words_in(words, active.end_s, window_end);
                    let response = is_take_over(&answer, answer_words.as_deref(), rules);
                    result.response = Some(response);
                    result.agent_onset_s = answer.first().map(|s| s.start_s);
                    if response {
                        result.response_latency_s =
                            answer.first().map(|s| (s.start_s - end).max(0.0));
                    }
                } else {
                    result.response = Some(false);
                }
            } else {
                let silence_after = next.map_or(f64::INFINITY, |n| n.start_s - active.end_s);
                let false_stop = active.end_s <= end + rules.backchannel_stop_window_s
                    && silence_after >= rules.backchannel_stop_silence_s;
                result.false_stop = Some(false_stop);
            }
        }
    }
    result
}

/// Aggregates dialogue results.
pub fn summarize(dialogues: &[DialogueResult]) -> Summary {
    let items: Vec<&ItemResult> = dialogues.iter().flat_map(|d| &d.items).collect();
    let of = |task: Task| items.iter().filter(move |i| i.task == task);
    let count = |task: Task, f: fn(&ItemResult) -> bool| of(task).filter(|i| f(i)).count();
    let values = |task: Task, f: fn(&ItemResult) -> Option<f64>| -> Vec<f64> {
        of(task).filter_map(|i| f(i)).collect()
    };

    let turns = of(Task::TurnTaking).count();
    let turn_take_overs = count(Task::TurnTaking, |i| i.take_over == Some(true));
    let pauses = of(Task::Pause).count();
    let pause_take_overs = count(Task::Pause, |i| i.take_over == Some(true));
    let pause_onsets = count(Task::Pause, |i| i.agent_onset_s.is_some());
    let interruptions = of(Task::Interruption).count();
    let interruptions_applicable = count(Task::Interruption, |i| i.applicable == Some(true));
    let stops = count(Task::Interruption, |i| i.stopped == Some(true));
    let responses = count(Task::Interruption, |i| i.response == Some(true));
    let backchannels = of(Task::Backchannel).count();
    let backchannels_applicable = count(Task::Backchannel, |i| i.applicable == Some(true));
    let false_stops = count(Task::Backchannel, |i| i.false_stop == Some(true));

    let mut decisions = BTreeMap::new();
    for decision in dialogues.iter().flat_map(|d| &d.decisions) {
        *decisions.entry(decision.kind.clone()).or_insert(0) += 1;
    }

    Summary {
        dialogues: dialogues.len(),
        turn_taking: TurnTakingSummary {
            items: turns,
            take_overs: turn_take_overs,
            take_over_rate: rate(turn_take_overs, turns),
            latency_s: Stats::of(&values(Task::TurnTaking, |i| i.latency_s)),
        },
        pause: PauseSummary {
            items: pauses,
            take_overs: pause_take_overs,
            take_over_rate: rate(pause_take_overs, pauses),
            any_onsets: pause_onsets,
            any_onset_rate: rate(pause_onsets, pauses),
        },
        interruption: InterruptionSummary {
            items: interruptions,
            applicable: interruptions_applicable,
            stops,
            stop_rate: rate(stops, interruptions_applicable),
            stop_latency_s: Stats::of(&values(Task::Interruption, |i| i.stop_latency_s)),
            responses,
            response_rate: rate(responses, interruptions_applicable),
            response_latency_s: Stats::of(&values(Task::Interruption, |i| i.response_latency_s)),
        },
        backchannel: BackchannelSummary {
            items: backchannels,
            applicable: backchannels_applicable,
            false_stops,
            false_stop_rate: rate(false_stops, backchannels_applicable),
        },
        decisions,
    }
}

/// Scores a configuration.
pub fn score_configuration(
    label: &str,
    inputs: &[DialogueInput],
    detector: &DetectorConfig,
    rules: &Rules,
) -> Configuration {
    let dialogues: Vec<DialogueResult> = inputs
        .iter()
        .map(|input| score_dialogue(input, detector, rules))
        .collect();
    Configuration {
        label: label.to_owned(),
        summary: summarize(&dialogues),
        dialogues,
    }
}

/// The metrics of the table, in order: name, unit scale for text, value.
fn metric_rows(summary: &Summary) -> Vec<(&'static str, Option<f64>, String)> {
    let s = summary;
    let frac = |n: usize, d: usize| format!("{n}/{d}");
    let n = |stats: &Stats| format!("n={}", stats.count);
    vec![
        (
            "turn-taking latency p50 (s)",
            s.turn_taking.latency_s.median,
            n(&s.turn_taking.latency_s),
        ),
        (
            "turn-taking latency p95 (s)",
            s.turn_taking.latency_s.p95,
            n(&s.turn_taking.latency_s),
        ),
        (
            "take-over rate",
            s.turn_taking.take_over_rate,
            frac(s.turn_taking.take_overs, s.turn_taking.items),
        ),
        (
            "pause take-over rate (lower is better)",
            s.pause.take_over_rate,
            frac(s.pause.take_overs, s.pause.items),
        ),
        (
            "pause: any agent sound rate",
            s.pause.any_onset_rate,
            frac(s.pause.any_onsets, s.pause.items),
        ),
        (
            "barge-in stop latency p50 (s)",
            s.interruption.stop_latency_s.median,
            n(&s.interruption.stop_latency_s),
        ),
        (
            "barge-in stop latency p95 (s)",
            s.interruption.stop_latency_s.p95,
            n(&s.interruption.stop_latency_s),
        ),
        (
            "stop rate",
            s.interruption.stop_rate,
            frac(s.interruption.stops, s.interruption.applicable),
        ),
        (
            "response rate after interruption",
            s.interruption.response_rate,
            frac(s.interruption.responses, s.interruption.applicable),
        ),
        (
            "response latency p50 (s)",
            s.interruption.response_latency_s.median,
            n(&s.interruption.response_latency_s),
        ),
        (
            "back-channel false-stop rate",
            s.backchannel.false_stop_rate,
            frac(s.backchannel.false_stops, s.backchannel.applicable),
        ),
    ]
}

/// Ratios of the first configuration over the second, per metric.
pub fn ratios(first: &Summary, second: &Summary) -> Vec<Ratio> {
    metric_rows(first)
        .into_iter()
        .zip(metric_rows(second))
        .map(|((metric, a, _), (_, b, _))| Ratio {
            metric: metric.to_owned(),
            value: match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                _ => None,
            },
        })
        .collect()
}

/// Builds the results of one or two configurations.
pub fn results(
    configurations: Vec<Configuration>,
    detector: DetectorConfig,
    rules: Rules,
) -> Results {
    let ratios = match configurations.as_slice() {
        [first, second] => ratios(&first.summary, &second.summary),
        _ => Vec::new(),
    };
    Results {
        schema: RESULTS_SCHEMA.to_owned(),
        detector,
        rules,
        configurations,
        ratios,
    }
}

/// The text table: one column per configuration (value and count), then the ratio.
pub fn text_table(results: &Results) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let rows: Vec<Vec<(&str, Option<f64>, String)>> = results
        .configurations
        .iter()
        .map(|c| metric_rows(&c.summary))
        .collect();
    let metric_width = 40;
    let column_width = results
        .configurations
        .iter()
        .map(|c| c.label.len() + 2)
        .max()
        .unwrap_or(0)
        .max(22);
    let _ = write!(out, "{:<metric_width$}", "metric");
    for configuration in &results.configurations {
        let _ = write!(out, "{:>column_width$}", configuration.label);
    }
    let ratio_header = match results.configurations.as_slice() {
        [first, second] if !results.ratios.is_empty() => {
            format!("{}/{}", first.label, second.label)
        }
        _ => String::new(),
    };
    let ratio_width = (ratio_header.len() + 2).max(12);
    if !ratio_header.is_empty() {
        let _ = write!(out, "{ratio_header:>ratio_width$}");
    }
    out.push('\n');
    let row_count = rows.first().map_or(0, Vec::len);
    for row in 0..row_count {
        let _ = write!(out, "{:<metric_width$}", rows[0][row].0);
        for configuration_rows in &rows {
            let (_, value, count) = &configuration_rows[row];
            let cell = match value {
                Some(v) => format!("{v:.3} ({count})"),
                None => format!("- ({count})"),
            };
            let _ = write!(out, "{cell:>column_width$}");
        }
        if let Some(ratio) = results.ratios.get(row) {
            let cell = ratio.value.map_or("-".to_owned(), |v| format!("{v:.2}"));
            let _ = write!(out, "{cell:>ratio_width$}");
        }
        out.push('\n');
    }
    for configuration in &results.configurations {
        if !configuration.summary.decisions.is_empty() {
            let _ = write!(out, "decisions ({}):", configuration.label);
            for (kind, count) in &configuration.summary.decisions {
                let _ = write!(out, " {kind}={count}");
            }
            out.push('\n');
        }
        let interruption = &configuration.summary.interruption;
        let backchannel = &configuration.summary.backchannel;
        if interruption.applicable < interruption.items
            || backchannel.applicable < backchannel.items
        {
            let _ = writeln!(
                out,
                "not applicable ({}): {} of {} interruptions and {} of {} back-channels came while the agent was silent",
                configuration.label,
                interruption.items - interruption.applicable,
                interruption.items,
                backchannel.items - backchannel.applicable,
                backchannel.items
            );
        }
    }
    out
}
