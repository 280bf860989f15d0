//! The pictures: a PNG timeline per dialogue and a PNG histogram of latencies.
//!
//! Drawn with `plotters` into a bitmap; text is rendered in pure Rust (`ab_glyph`) from a TTF
//! file: `$DUPLEXBENCH_FONT` if set, else DejaVu Sans from the Debian package
//! `fonts-dejavu-core` (`/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::score::{Configuration, DialogueResult, ItemResult};
use crate::segments::{Task, UserSegments};

pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("font: {0}")]
    Font(String),
    #[error("{path}: drawing failed: {message}")]
    Draw { path: String, message: String },
}

/// Loads and registers the font once per process.
pub fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = std::env::var("DUPLEXBENCH_FONT").unwrap_or_else(|_| DEFAULT_FONT.into());
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read {path}: {e} (install the Debian package fonts-dejavu-core, \
                     or point DUPLEXBENCH_FONT at a TTF file)"
                )
            })?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TrueType font"))
        })
        .clone()
        .map_err(PlotError::Font)
}

fn draw_error(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        path: path.display().to_string(),
        message,
    }
}

const USER_COLOUR: RGBColor = RGBColor(45, 105, 190);
const AGENT_COLOUR: RGBColor = RGBColor(230, 125, 20);
const DECISION_COLOUR: RGBColor = RGBColor(90, 90, 90);
const GOOD: RGBColor = RGBColor(40, 160, 70);
const BAD: RGBColor = RGBColor(210, 40, 40);

fn item_note(item: &ItemResult) -> (String, RGBColor) {
    let yes_no = |flag: Option<bool>| flag == Some(true);
    match item.task {
        Task::TurnTaking => match item.latency_s {
            Some(latency) => (format!("answer after {:.0} ms", latency * 1000.0), GOOD),
            None => ("no take-over".into(), BAD),
        },
        Task::Pause => {
            if yes_no(item.take_over) {
                ("pause: agent took over".into(), BAD)
            } else {
                ("pause: agent waited".into(), GOOD)
            }
        }
        Task::Interruption => match (item.applicable, item.stop_latency_s) {
            (Some(false), _) => (
                "interruption: agent was silent (n/a)".into(),
                DECISION_COLOUR,
            ),
            (_, Some(stop)) => {
                let answered = if yes_no(item.response) {
                    ", answered"
                } else {
                    ", no answer"
                };
                (
                    format!("barge-in: stopped in {:.0} ms{answered}", stop * 1000.0),
                    GOOD,
                )
            }
            _ => ("barge-in: agent did not stop".into(), BAD),
        },
        Task::Backchannel => match (item.applicable, item.false_stop) {
            (Some(false), _) => (
                "back-channel: agent was silent (n/a)".into(),
                DECISION_COLOUR,
            ),
            (_, Some(true)) => ("back-channel: agent stopped".into(), BAD),
            _ => ("back-channel: agent kept talking".into(), GOOD),
        },
    }
}

/// Draws one dialogue: user speech (blue) and agent speech (orange) as bars, the scored items
/// as shaded spans and notes, decisions as marks.
pub fn draw_timeline(
    path: &Path,
    title: &str,
    user: &UserSegments,
    result: &DialogueResult,
) -> Result<(), PlotError> {
    ensure_font()?;
    let fail = draw_error(path);
    let duration = result.user_duration_s.max(result.agent_duration_s).max(0.1);
    let root = BitMapBackend::new(path, (1600, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..duration, 0f64..3f64)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(7)
        .y_label_formatter(&|y| {
            let name = if (y - 2.5).abs() < 1e-6 {
                "user"
            } else if (y - 1.5).abs() < 1e-6 {
                "agent"
            } else if (y - 0.5).abs() < 1e-6 {
                "decisions"
            } else {
                ""
            };
            name.to_owned()
        })
        .x_desc("time (s)")
        .label_style((FONT, 16))
        .draw()
        .map_err(|e| fail(e.to_string()))?;

    // Item spans under the bars.
    for item in &result.items {
        let (_, colour) = item_note(item);
        let (from, to) = match item.task {
            Task::Pause => (item.start_s, item.end_s),
            Task::TurnTaking => (
                item.end_s,
                item.latency_s.map_or(item.end_s, |l| item.end_s + l),
            ),
            Task::Interruption => (
                item.start_s,
                item.start_s + item.stop_latency_s.unwrap_or(0.0),
            ),
            Task::Backchannel => (item.start_s, item.end_s),
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from, 1.0), (to.max(from + duration / 800.0), 3.0)],
                colour.mix(0.18).filled(),
            )))
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .draw_series(user.segments.iter().map(|s| {
            Rectangle::new(
                [(user.seconds(s.start), 2.2), (user.seconds(s.end), 2.8)],
                USER_COLOUR.filled(),
            )
        }))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .draw_series(
            result
                .agent_speech
                .iter()
                .map(|s| Rectangle::new([(s.start_s, 1.2), (s.end_s, 1.8)], AGENT_COLOUR.filled())),
        )
        .map_err(|e| fail(e.to_string()))?;
    // User words above their bars, item notes between the rows.
    chart
        .draw_series(user.segments.iter().map(|s| {
            Text::new(
                s.text.clone(),
                (user.seconds(s.start), 2.93),
                (FONT, 14).into_font().color(&BLACK),
            )
        }))
        .map_err(|e| fail(e.to_string()))?;
    for (index, item) in result.items.iter().enumerate() {
        let (note, colour) = item_note(item);
        let y = if index % 2 == 0 { 2.12 } else { 2.02 };
        chart
            .draw_series(std::iter::once(Text::new(
                note,
                (item.start_s, y),
                (FONT, 14).into_font().color(&colour),
            )))
            .map_err(|e| fail(e.to_string()))?;
    }
    // Decisions: a tick and the kind, staggered on three levels.
    // Decisions past the end are left out (the results JSON carries a warning about them).
    let shown = result.decisions.iter().filter(|d| d.time_s <= duration);
    for (index, decision) in shown.enumerate() {
        let level = 0.72 - 0.25 * (index % 3) as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(decision.time_s, 0.05), (decision.time_s, 0.95)],
                DECISION_COLOUR.stroke_width(2),
            )))
            .map_err(|e| fail(e.to_string()))?;
        chart
            .draw_series(std::iter::once(Text::new(
                decision.kind.clone(),
                (decision.time_s + duration / 400.0, level),
                (FONT, 13).into_font().color(&DECISION_COLOUR),
            )))
            .map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))
}

const SERIES_COLOURS: [RGBColor; 4] = [
    RGBColor(230, 125, 20),
    RGBColor(45, 105, 190),
    RGBColor(40, 160, 70),
    RGBColor(150, 60, 170),
];

fn histogram_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit_scale: f64,
    unit: &str,
    bin: f64,
    minimum_range: f64,
    series: &[(String, Vec<f64>)],
) -> Result<(), String> {
    let largest = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let bins = ((largest.max(minimum_range) / bin).floor() as usize) + 1;
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, values)| {
            let mut counts = vec![0usize; bins];
            for v in values {
                // The small epsilon keeps 0.8 s in the 0.80 bin when arithmetic gives 0.7999...
                counts[((v / bin + 1e-9).floor() as usize).min(bins - 1)] += 1;
            }
            counts
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1);
    let x_end = bins as f64 * bin * unit_scale;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..x_end, 0f64..(top as f64 * 1.15))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(unit)
        .y_desc("count")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .label_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = bin * unit_scale / series.len().max(1) as f64;
    for (index, ((label, values), counts)) in series.iter().zip(&counts).enumerate() {
        let colour = SERIES_COLOURS[index % SERIES_COLOURS.len()];
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let summary = match (
            crate::score::quantile(&sorted, 0.5),
            crate::score::quantile(&sorted, 0.95),
        ) {
            (Some(p50), Some(p95)) => format!(
                "{label}: n={} p50={:.0} p95={:.0} {unit}",
                values.len(),
                p50 * unit_scale,
                p95 * unit_scale
            ),
            _ => format!("{label}: no values"),
        };
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(b, &c)| {
                        let x0 = b as f64 * bin * unit_scale + index as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width * 0.9, c as f64)], colour.filled())
                    }),
            )
            .map_err(|e| e.to_string())?
            .label(summary)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Draws the histograms of turn-taking latency and barge-in stop latency, one colour per
/// configuration.
pub fn draw_latency_histogram(
    path: &Path,
    configurations: &[Configuration],
) -> Result<(), PlotError> {
    ensure_font()?;
    let fail = draw_error(path);
    let values = |task: Task, f: fn(&ItemResult) -> Option<f64>| -> Vec<(String, Vec<f64>)> {
        configurations
            .iter()
            .map(|c| {
                (
                    c.label.clone(),
                    c.dialogues
                        .iter()
                        .flat_map(|d| &d.items)
                        .filter(|i| i.task == task)
                        .filter_map(f)
                        .collect(),
                )
            })
            .collect()
    };
    let root = BitMapBackend::new(path, (1600, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let (left, right) = root.split_horizontally(800);
    histogram_panel(
        &left,
        "turn-taking latency (agent onset - user offset)",
        1000.0,
        "ms",
        0.05,
        1.0,
        &values(Task::TurnTaking, |i| i.latency_s),
    )
    .map_err(&fail)?;
    histogram_panel(
        &right,
        "barge-in stop latency (user onset - agent silent)",
        1000.0,
        "ms",
        0.025,
        0.5,
        &values(Task::Interruption, |i| i.stop_latency_s),
    )
    .map_err(&fail)?;
    root.present().map_err(|e| fail(e.to_string()))
}
