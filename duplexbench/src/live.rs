//! The live runner: plays a user WAV at real-time pace through the whole agent
//! (`microturnmux ! interactionmodel`, `speechsynth`, `reasoningsidecar` looped back into the
//! aligner) and records what comes out, time-aligned with the user side.
//!
//! The user audio goes in through a live `appsrc` (20 ms F32 buffers at 16 kHz, each pushed
//! when the pipeline clock reaches its end, like a capture card). The first user sample has
//! running time `t0`; every recorded agent sample, caption and decision is placed relative to
//! `t0`, so agent sample 0 is user sample 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::audio;
use crate::cues::{AgentTalk, Chunk, CuedPlayer};
use crate::detect::DetectorConfig;
use crate::runner::{AgentUnderTest, Recording};
use crate::segments::UserSegments;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sample rate of the user side, the aligner and the recording.
pub const RATE: u32 = 16_000;
/// Samples per pushed user buffer (20 ms).
const CHUNK: usize = 320;
/// Agent audio as it arrived: (running time in ns, samples).
type TimedChunk = (u64, Vec<f32>);
/// What one run collects: the agent's audio, the captions, the decision lines and the user
/// side as played.
type RunOutputs = (Vec<f32>, Vec<Caption>, Vec<String>, Played);
/// How long one pushed buffer lasts (CHUNK samples at RATE), in ns.
const CHUNK_NS: u64 = CHUNK as u64 * 1_000_000_000 / RATE as u64;
/// The aligner's `latency` property: slack for scheduling jitter, in ns.
const MUX_LATENCY_NS: u64 = 60_000_000;
/// What the user-audio thread played: the samples and the script mapped onto them.
type Played = (Vec<f32>, UserSegments);
/// Silence played after the user WAV before EOS, so the agent's last reaction is recorded.
const TAIL: Duration = Duration::from_secs(1);
/// How long to wait for EOS after the last user buffer.
const EOS_TIMEOUT: Duration = Duration::from_secs(30);

/// Registers the four interaction plugins from their rlibs (no `GST_PLUGIN_PATH` needed).
pub fn init() -> Result<(), BoxError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        gstmicroturn::plugin_register_static().map_err(|e| e.to_string())?;
        gstinteraction::plugin_register_static().map_err(|e| e.to_string())?;
        gstspeech::plugin_register_static().map_err(|e| e.to_string())?;
        gstreasoning::plugin_register_static().map_err(|e| e.to_string())?;
        Ok(())
    })
    .clone()
    .map_err(|e| format!("GStreamer / plugin registration: {e}").into())
}

/// Which turn detection the agent runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    /// The default model package (Smart Turn judges each pause).
    Default,
    /// The cascade with `turn-detection=silence silence-ms=500` (the baseline).
    Silence500,
}

impl Config {
    pub fn label(self) -> &'static str {
        match self {
            Config::Default => "default",
            Config::Silence500 => "silence-500ms",
        }
    }

    fn properties(self) -> &'static str {
        match self {
            Config::Default => "",
            Config::Silence500 => "turn-detection=silence silence-ms=500",
        }
    }
}

/// The whole agent as a GStreamer pipeline.
pub struct GstAgent {
    pub config: Config,
    /// `max-tokens` of the reasoning sidecar (small keeps the CPU time low).
    pub max_tokens: u32,
    /// `threads` of the reasoning sidecar (0: the element's default, half the cores).
    pub sidecar_threads: u32,
    /// Print progress (model loading, playing) on stderr.
    pub verbose: bool,
    /// Cue interruptions and back-channels on the agent's live output ([`crate::cues`]);
    /// off, the user side plays exactly as given (a user's own recording).
    pub cued: bool,
}

impl GstAgent {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            max_tokens: 24,
            sidecar_threads: 0,
            verbose: false,
            cued: true,
        }
    }

    /// The user's audio arrives like a capture card's: a 20 ms buffer when its last sample is
    /// in, so the source reports 20 ms of latency. The aligner adds 60 ms of slack for
    /// scheduling jitter on a loaded machine. Without both, a turn's deadline fell exactly when
    /// its last buffer arrived, and a lost race made every later buffer "late" (dropped).
    fn description(&self) -> String {
        format!(
            "appsrc name=user is-live=true format=time do-timestamp=false min-latency={CHUNK_NS} \
               caps=audio/x-raw,format=F32LE,rate={RATE},channels=1,layout=interleaved \
             ! queue ! microturnmux name=mux start-time-selection=first latency={MUX_LATENCY_NS} \
             ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000 \
             ! interactionmodel name=im {props} \
             im.speech ! queue ! speechsynth name=synth is-live=true \
               ! audioconvert ! audioresample \
               ! audio/x-raw,format=F32LE,rate={RATE},channels=1 \
               ! appsink name=agent sync=false async=false \
             im.reasoning ! queue ! reasoningsidecar name=sidecar max-tokens={tokens} \
               threads={threads} ! mux.text_0 \
             im.transcript ! queue ! appsink name=captions sync=false async=false",
            props = self.config.properties(),
            tokens = self.max_tokens,
            threads = self.sidecar_threads,
        )
    }

    fn say(&self, text: &str) {
        if self.verbose {
            eprintln!("{text}");
        }
    }
}

/// One caption of the transcript pad, times from user sample 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

/// Decision bus messages that go into the decisions file (name without `interaction/`).
const DECISION_KINDS: &[&str] = &[
    "user-turn-ended",
    "agent-started-speaking",
    "agent-yielded",
    "agent-paused",
    "agent-resumed",
    "barge-in",
    "backchannel",
    "filler",
    "reasoning-requested",
    "result-used",
];

fn element<T: IsA<gst::Element>>(bin: &gst::Bin, name: &str) -> Result<T, BoxError> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| format!("the pipeline has no element `{name}` of the expected type").into())
}

fn running_time_of(sample: &gst::Sample) -> Option<u64> {
    let buffer = sample.buffer()?;
    let pts = buffer.pts()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    segment.to_running_time(pts).map(|t| t.nseconds())
}

impl AgentUnderTest for GstAgent {
    fn label(&self) -> &str {
        self.config.label()
    }

    fn run(
        &mut self,
        user_wav: &Path,
        segments: &UserSegments,
        out_dir: &Path,
    ) -> Result<Recording, BoxError> {
        init()?;
        let user = audio::read_wav(user_wav)?;
        if user.sample_rate != RATE {
            return Err(format!(
                "{}: the user side must be {RATE} Hz mono (it is {} Hz)",
                user_wav.display(),
                user.sample_rate
            )
            .into());
        }
        std::fs::create_dir_all(out_dir)?;
        let stem = format!("{}.{}", segments.dialogue, self.label());

        let pipeline = gst::parse::launch(&self.description())?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline")?;
        let bin = pipeline.upcast_ref::<gst::Bin>();
        let mux: gst::Element = element(bin, "mux")?;
        let text_pad = mux
            .static_pad("text_0")
            .ok_or("microturnmux has no text_0 pad")?;
        text_pad.set_property("loopback", true);
        let source: gst_app::AppSrc = element(bin, "user")?;
        let agent_sink: gst_app::AppSink = element(bin, "agent")?;
        let caption_sink: gst_app::AppSink = element(bin, "captions")?;

        // Agent audio and captions, by running time; placed once t0 is known.
        let agent_chunks: Arc<Mutex<Vec<TimedChunk>>> = Arc::default();
        let chunks = agent_chunks.clone();
        // The agent's talk as it is heard, for the cues.
        let talk = Arc::new(Mutex::new(AgentTalk::new(&DetectorConfig::default())));
        let talk_in = talk.clone();
        agent_sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let (Some(time), Some(buffer)) = (running_time_of(&sample), sample.buffer())
                    {
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let samples: Vec<f32> = map
                            .as_slice()
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect();
                        if let Ok(mut talk) = talk_in.lock() {
                            talk.feed(time, &samples, RATE);
                        }
                        if let Ok(mut chunks) = chunks.lock() {
                            chunks.push((time, samples));
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let captions_raw: Arc<Mutex<Vec<(u64, u64, String)>>> = Arc::default();
        let captions_in = captions_raw.clone();
        caption_sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let (Some(time), Some(buffer)) = (running_time_of(&sample), sample.buffer())
                    {
                        let duration = buffer.duration().map(|d| d.nseconds()).unwrap_or(0);
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let text = String::from_utf8_lossy(map.as_slice()).trim().to_owned();
                        if let Ok(mut captions) = captions_in.lock() {
                            captions.push((time, duration, text));
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );

        let loading = Instant::now();
        self.say(&format!(
            "  [{}] loading the models (Silero VAD, Smart Turn, Whisper tiny.en, Piper voice, SmolLM2)...",
            self.label()
        ));
        let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
        let result = (|| -> Result<RunOutputs, BoxError> {
            pipeline.set_state(gst::State::Paused)?;
            // Live: PAUSED returns NO_PREROLL; wait for every element to have started (models
            // load in READY -> PAUSED).
            let (state_result, _, _) = pipeline.state(gst::ClockTime::from_seconds(120));
            state_result.map_err(|_| {
                bus_error(&bus).unwrap_or_else(|| "the pipeline did not start".into())
            })?;
            pipeline.set_state(gst::State::Playing)?;
            let (state_result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
            state_result.map_err(|_| {
                bus_error(&bus).unwrap_or_else(|| "the pipeline did not reach PLAYING".into())
            })?;
            self.say(&format!(
                "  [{}] models loaded in {:.1} s; playing {} ({:.1} s of user audio) in real time",
                self.label(),
                loading.elapsed().as_secs_f64(),
                segments.dialogue,
                user.samples.len() as f64 / f64::from(RATE)
            ));
            let clock = pipeline.clock().ok_or("the pipeline has no clock")?;
            let base = pipeline
                .base_time()
                .ok_or("the pipeline has no base time")?;
            let now = clock.time();
            // The first user sample: 100 ms from now, on a 20 ms grid.
            let t0 = (now.saturating_sub(base).nseconds() / 20_000_000 + 5) * 20_000_000;

            let cues = if self.cued {
                crate::cues::cues(segments)
            } else {
                Vec::new()
            };
            let cue_count = cues.len();
            let generated = segments.clone();
            let user_samples = user.samples.clone();
            let pusher = {
                let source = source.clone();
                let clock = clock.clone();
                let talk = talk.clone();
                std::thread::spawn(move || -> Result<Played, String> {
                    let mut player = CuedPlayer::new(&user_samples, RATE, CHUNK, cues);
                    let mut played: Vec<f32> = Vec::with_capacity(user_samples.len());
                    let silence = vec![0.0f32; CHUNK];
                    let tail_chunks = (TAIL.as_nanos() as u64).div_ceil(CHUNK_NS);
                    let mut tail_left = tail_chunks;
                    let mut offset = 0u64;
                    loop {
                        let chunk: &[f32] = {
                            let talk = talk.lock().map_err(|_| "poisoned")?;
                            match player.next_chunk(t0, &talk) {
                                Chunk::Audio(audio) => audio,
                                Chunk::Silence(n) => &silence[..n],
                                Chunk::End if tail_left > 0 => {
                                    tail_left -= 1;
                                    &silence
                                }
                                Chunk::End => break,
                            }
                        };
                        if tail_left == tail_chunks {
                            played.extend_from_slice(chunk);
                        }
                        let pts = t0 + offset * 1_000_000_000 / u64::from(RATE);
                        let duration = chunk.len() as u64 * 1_000_000_000 / u64::from(RATE);
                        // A capture card delivers a buffer when its last sample is in.
                        let due = base + gst::ClockTime::from_nseconds(pts + duration);
                        let _ = clock.new_single_shot_id(due).wait();
                        let mut bytes = Vec::with_capacity(chunk.len() * 4);
                        for s in chunk {
                            bytes.extend_from_slice(&s.to_le_bytes());
                        }
                        let mut buffer = gst::Buffer::from_mut_slice(bytes);
                        {
                            let buffer = buffer.get_mut().ok_or("buffer not writable")?;
                            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
                            buffer.set_duration(gst::ClockTime::from_nseconds(duration));
                        }
                        if let Err(e) = source.push_buffer(buffer) {
                            return Err(format!("pushing user audio: {e:?}"));
                        }
                        offset += chunk.len() as u64;
                    }
                    source
                        .end_of_stream()
                        .map_err(|e| format!("EOS on the user source: {e:?}"))?;
                    let side = player.played_segments(&generated);
                    Ok((played, side))
                })
            };

            let mut decisions = Vec::new();
            // Each cue may hold the user side up to its timeout beyond the script.
            let play_time = Duration::from_secs_f64(
                (user.samples.len() as f64 / f64::from(RATE))
                    + cue_count as f64 * (crate::cues::CUE_TIMEOUT_S + 5.0)
                    + TAIL.as_secs_f64(),
            );
            let deadline = Instant::now() + play_time + EOS_TIMEOUT;
            let outcome: Result<(), BoxError> = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Err(format!(
                        "no EOS within {} s after the user audio",
                        EOS_TIMEOUT.as_secs()
                    )
                    .into());
                }
                let Some(message) =
                    bus.timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
                else {
                    continue;
                };
                match message.view() {
                    gst::MessageView::Eos(_) => break Ok(()),
                    gst::MessageView::Error(e) => {
                        break Err(format!("{} ({:?})", e.error(), e.debug()).into());
                    }
                    gst::MessageView::Element(e) => {
                        let Some(structure) = e.structure() else {
                            continue;
                        };
                        let Some(kind) = structure.name().strip_prefix("interaction/") else {
                            continue;
                        };
                        if !DECISION_KINDS.contains(&kind) {
                            continue;
                        }
                        let Ok(time) = structure.get::<u64>("running-time") else {
                            continue;
                        };
                        if time < t0 {
                            continue;
                        }
                        let mut line = serde_json::Map::new();
                        line.insert("kind".into(), kind.into());
                        line.insert("time_s".into(), ((time - t0) as f64 / 1e9).into());
                        line.insert("running_time_ns".into(), time.into());
                        for field in ["reason", "text", "request-id", "utterance-id"] {
                            if let Ok(value) = structure.value(field)
                                && let Ok(text) = value.serialize()
                            {
                                line.insert(field.into(), text.to_string().into());
                            }
                        }
                        decisions.push(serde_json::Value::Object(line).to_string());
                    }
                    _ => {}
                }
            };
            let pushed = pusher
                .join()
                .map_err(|_| "the user audio thread panicked")?;
            let stats = mux.property::<gst::Structure>("stats");
            self.say(&format!("  [{}] aligner: {stats}", self.label()));
            outcome?;
            let played = pushed?;

            // Place the agent audio by running time.
            let length = played.0.len();
            let mut agent = vec![0.0f32; length];
            for (time, chunk) in agent_chunks.lock().map_err(|_| "poisoned")?.iter() {
                let Some(offset) = time.checked_sub(t0) else {
                    continue;
                };
                let start = (offset as u128 * u128::from(RATE) / 1_000_000_000) as usize;
                for (i, s) in chunk.iter().enumerate() {
                    match agent.get_mut(start + i) {
                        Some(slot) => *slot = *s,
                        None => break,
                    }
                }
            }
            let captions = captions_raw
                .lock()
                .map_err(|_| "poisoned")?
                .iter()
                .map(|(time, duration, text)| {
                    let start_s = time.saturating_sub(t0) as f64 / 1e9;
                    Caption {
                        start_s,
                        end_s: start_s + *duration as f64 / 1e9,
                        text: text.clone(),
                    }
                })
                .collect();
            Ok((agent, captions, decisions, played))
        })();
        let _ = pipeline.set_state(gst::State::Null);
        let (agent, captions, decisions, (user_samples, user_side)) = result?;

        let agent_wav = out_dir.join(format!("{stem}.agent.wav"));
        write_wav_f32(&agent_wav, &[&agent])?;
        let stereo = out_dir.join(format!("{stem}.stereo.wav"));
        write_wav_f32(&stereo, &[&user_samples, &agent])?;
        // The user side as played (cued items moved; identical to the input when not cued).
        let user_wav = out_dir.join(format!("{stem}.user.wav"));
        write_wav_f32(&user_wav, &[&user_samples])?;
        crate::generate::write_json(&out_dir.join(format!("{stem}.user.json")), &user_side)?;
        let decisions_path = out_dir.join(format!("{stem}.decisions.jsonl"));
        let mut file = std::fs::File::create(&decisions_path)?;
        for line in &decisions {
            writeln!(file, "{line}")?;
        }
        std::fs::write(
            out_dir.join(format!("{stem}.captions.srt")),
            captions_srt(&captions),
        )?;
        Ok(Recording {
            agent_wav,
            decisions: Some(decisions_path),
            user_wav,
            user: user_side,
        })
    }
}

fn bus_error(bus: &gst::Bus) -> Option<BoxError> {
    while let Some(message) = bus.pop() {
        if let gst::MessageView::Error(e) = message.view() {
            return Some(format!("{} ({:?})", e.error(), e.debug()).into());
        }
    }
    None
}

/// Writes float WAV, one channel per slice (all the same length), at [`RATE`].
pub fn write_wav_f32(path: &Path, channels: &[&[f32]]) -> Result<(), BoxError> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    let length = channels.iter().map(|c| c.len()).max().unwrap_or(0);
    for i in 0..length {
        for channel in channels {
            writer.write_sample(channel.get(i).copied().unwrap_or(0.0))?;
        }
    }
    writer.finalize()?;
    Ok(())
}

fn srt_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Captions as SRT (times from user sample 0).
pub fn captions_srt(captions: &[Caption]) -> String {
    let mut text = String::new();
    for (index, caption) in captions.iter().enumerate() {
        let end = caption.end_s.max(caption.start_s + 0.5);
        text.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            index + 1,
            srt_time(caption.start_s),
            srt_time(end),
            caption.text
        ));
    }
    text
}

/// One dialogue of a generated set, as the runner needs it.
pub struct SetEntry {
    pub wav: PathBuf,
    pub segments: UserSegments,
}

/// Reads a generated set (`manifest.json`, the WAVs and JSONs beside it).
pub fn load_set(dir: &Path) -> Result<Vec<SetEntry>, BoxError> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest: crate::generate::Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a generated set: {e}", manifest_path.display()))?;
    crate::generate::manifest_paths(dir, &manifest)
        .into_iter()
        .map(|(wav, json)| {
            Ok(SetEntry {
                wav,
                segments: UserSegments::load(&json)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_times_and_numbering() {
        let text = captions_srt(&[Caption {
            start_s: 61.2345,
            end_s: 63.0,
            text: "user: hello".into(),
        }]);
        assert_eq!(text, "1\n00:01:01,235 --> 00:01:03,000\nuser: hello\n\n");
    }
}
