//! Support for the whole-system tests: the pipeline files of `pipelines/` that run every
//! interaction plugin together (aligner, interaction model, speech, reasoning).
//!
//! The plugins are registered statically from their rlibs, so the tests need no
//! `GST_PLUGIN_PATH`. The user's side is spoken by espeak-ng (a separate program, as everywhere
//! in the project) and padded with silence by sox.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// The workspace root (where `pipelines/` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// GStreamer with the four interaction plugins registered from their rlibs.
pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer");
        gstmicroturn::plugin_register_static().expect("register microturn");
        gstinteraction::plugin_register_static().expect("register interaction");
        gstspeech::plugin_register_static().expect("register speech");
        gstreasoning::plugin_register_static().expect("register reasoning");
    });
}

/// One whole-agent pipeline at a time: they run in real time, and two at once on a small
/// machine would make each other late.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A spoken question as a 16 kHz mono 16-bit WAV: `lead` seconds of silence, `text` spoken by
/// espeak-ng, then `tail` seconds of silence. Returns the file and the time (s) the speech ends.
pub fn spoken_wav(
    dir: &Path,
    name: &str,
    text: &str,
    lead: f64,
    tail: f64,
) -> Result<(PathBuf, f64), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let raw = dir.join(format!("{name}.espeak.wav"));
    let wav = dir.join(format!("{name}.wav"));
    test_audio::espeak(text, &[], &raw)?;
    test_audio::to_16k(&raw, &wav, &["pad", &lead.to_string(), &tail.to_string()])?;
    let (rate, samples) = read_wav(&wav)?;
    let total = samples.len() as f64 / f64::from(rate);
    Ok((wav, total - tail))
}

/// The first channel of a WAV file as floats in [-1, 1], with its sample rate.
pub fn read_wav(path: &Path) -> Result<(u32, Vec<f32>), String> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample.max(1) - 1)) as f32;
            reader
                .samples::<i32>()
                .step_by(channels)
                .map(|s| s.map(|s| s as f32 / scale))
                .collect::<Result<_, _>>()
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .step_by(channels)
            .collect::<Result<_, _>>(),
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((spec.sample_rate, samples))
}

/// Seconds of sound (20 ms frames with an RMS above 0.01, about -40 dBFS) from `from` seconds on.
pub fn voiced_seconds(samples: &[f32], rate: u32, from: f64) -> f64 {
    let frame = (rate / 50) as usize;
    let start = ((from.max(0.0) * f64::from(rate)) as usize).min(samples.len());
    let voiced = samples[start..]
        .chunks(frame)
        .filter(|chunk| {
            let energy: f32 = chunk.iter().map(|s| s * s).sum::<f32>() / chunk.len() as f32;
            energy.sqrt() > 0.01
        })
        .count();
    voiced as f64 * 0.02
}

/// The time (s) of the first 20 ms frame with sound at or after `from`.
pub fn first_sound(samples: &[f32], rate: u32, from: f64) -> Option<f64> {
    let frame = (rate / 50) as usize;
    let start = (from.max(0.0) * f64::from(rate)) as usize;
    samples
        .get(start..)?
        .chunks(frame)
        .position(|chunk| {
            let energy: f32 = chunk.iter().map(|s| s * s).sum::<f32>() / chunk.len() as f32;
            energy.sqrt() > 0.01
        })
        .map(|index| (start + index * frame) as f64 / f64::from(rate))
}

/// Parses a pipeline file of `pipelines/` with some placeholders replaced.
pub fn launch(file: &str, overrides: &[(&str, &str)]) -> Result<gst::Pipeline, String> {
    init();
    let description = interaction_runtime::pipeline_file::load(
        workspace_root().join("pipelines").join(file),
        overrides,
    )?;
    gst::parse::launch(&description)
        .map_err(|e| format!("{file}: {e}\n{description}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| format!("{file} is not a pipeline"))
}

/// What a run posted on the bus.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Warning messages, as `element: message (debug)`.
    pub warnings: Vec<String>,
    /// Element messages (decisions, progress), in order.
    pub messages: Vec<gst::Structure>,
    /// Wall-clock time from PLAYING to EOS.
    pub played: Duration,
    /// Wall-clock time to reach PLAYING (model loading).
    pub loading: Duration,
}

impl Outcome {
    /// How many element messages of this name were posted.
    pub fn count(&self, name: &str) -> usize {
        self.messages.iter().filter(|s| s.name() == name).count()
    }
}

/// Plays `pipeline` until EOS, an error or `timeout`; `stop_after` (if any) sends EOS that
/// long after PLAYING (for live sources that never end). Always leaves it in NULL.
pub fn run(
    pipeline: &gst::Pipeline,
    timeout: Duration,
    stop_after: Option<Duration>,
) -> Result<Outcome, String> {
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let mut outcome = Outcome::default();
    let result = (|| {
        let loading = Instant::now();
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| bus_error(&bus).unwrap_or_else(|| "the pipeline did not start".into()))?;
        let (state, _, _) = pipeline.state(gst::ClockTime::from_seconds(120));
        state.map_err(|_| {
            bus_error(&bus).unwrap_or_else(|| "the pipeline did not reach PLAYING".into())
        })?;
        outcome.loading = loading.elapsed();
        let started = Instant::now();
        let mut eos_sent = false;
        loop {
            let elapsed = started.elapsed();
            if elapsed > timeout {
                return Err(format!("no EOS within {timeout:?}"));
            }
            if let Some(after) = stop_after
                && !eos_sent
                && elapsed >= after
            {
                pipeline.send_event(gst::event::Eos::new());
                eos_sent = true;
            }
            let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                continue;
            };
            match message.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => {
                    return Err(format!(
                        "{}: {} ({:?})",
                        source_name(&message),
                        e.error(),
                        e.debug()
                    ));
                }
                gst::MessageView::Warning(w) => outcome.warnings.push(format!(
                    "{}: {} ({:?})",
                    source_name(&message),
                    w.error(),
                    w.debug()
                )),
                gst::MessageView::Element(e) => {
                    if let Some(structure) = e.structure() {
                        outcome.messages.push(structure.to_owned());
                    }
                }
                _ => {}
            }
        }
        outcome.played = started.elapsed();
        Ok(())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result.map(|()| outcome)
}

fn source_name(message: &gst::Message) -> String {
    message
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "?".into())
}

/// The first error on the bus; waits up to 2 s for it, since a failed state change can return
/// before the element that failed has posted its error (an RTSP 401 on a loaded machine).
fn bus_error(bus: &gst::Bus) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = bus.timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))?;
        if let gst::MessageView::Error(e) = message.view() {
            return Some(format!(
                "{}: {} ({:?})",
                source_name(&message),
                e.error(),
                e.debug()
            ));
        }
    }
}

/// The named element of a pipeline.
pub fn element(pipeline: &gst::Pipeline, name: &str) -> Result<gst::Element, String> {
    pipeline
        .by_name(name)
        .ok_or_else(|| format!("the pipeline has no element named {name}"))
}

/// The elements upstream of `element`, following the peers of each sink pad (nearest first).
pub fn upstream_factories(element: &gst::Element) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = element.clone();
    for _ in 0..64 {
        let Some(peer) = current
            .sink_pads()
            .first()
            .and_then(|pad| pad.peer())
            .and_then(|pad| pad.parent_element())
        else {
            break;
        };
        if let Some(factory) = peer.factory() {
            names.push(factory.name().to_string());
        }
        current = peer;
    }
    names
}

/// What Whisper tiny.en (the model the agent itself uses; scripts/setup.sh fetches it) hears in
/// 16 kHz mono audio (at most its first 30 s), as lower-case words.
pub fn heard_words(samples: &[f32]) -> Result<Vec<String>, String> {
    let mut whisper = interaction_asr::Whisper::load(interaction_asr::default_model_dir())
        .map_err(|e| format!("Whisper tiny.en in the model cache (scripts/setup.sh): {e}"))?;
    let transcript = whisper.transcribe(samples).map_err(|e| e.to_string())?;
    Ok(interaction_asr::wer::normalize_words(&transcript.text))
}
