//! Test support: real speech (espeak-ng as a separate process, sox to 16 kHz, both through the
//! workspace's `test-audio`), scripts of speech and silence, micro-turn packets, and a pipeline
//! `appsrc ! interactionmodel` whose three source pads are recorded in order (buffers and
//! events).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use interaction_protocol::events::{Backchannel, Pause, Progress, Resume, Speak, Yield};
use interaction_protocol::packet::{self, Header, PacketWriter, packet_flags};

pub const RATE: usize = 16_000;
pub const TURN_NS: u64 = 200_000_000;
pub const TURN_SAMPLES: usize = 3_200;
pub const MS: u64 = 1_000_000;

pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer");
        gstinteraction::plugin_register_static().expect("register the interaction plugin");
    });
}

/// A scratch folder for this test binary's files, under the target dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}

/// `path` with this process's and thread's id before its extension: a scratch name no other
/// test writes to.
fn unique(path: &Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scratch");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("tmp");
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    path.with_file_name(format!("{stem}.{}-{thread}.{ext}", std::process::id()))
}

/// `text` spoken by espeak-ng, as 16 kHz mono f32 with espeak's leading and trailing
/// silence trimmed (so the script's silences are the only ones).
///
/// The files are kept under the target dir, in folders whose names say they hold conversions
/// without dither (see `test-audio`): a checkout's older files, converted with dither, are not
/// read again.
pub fn espeak(text: &str) -> Vec<f32> {
    let dir = scratch_dir("espeak-16k-nodither");
    let name: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    let raw = unique(&dir.join(format!("{name}.espeak.wav")));
    let wav = dir.join(format!("{name}.wav"));
    if !wav.is_file() {
        test_audio::espeak(text, &[], &raw).unwrap();
        let converted = unique(&wav);
        test_audio::to_16k(&raw, &converted, &[]).unwrap();
        // Tests of one binary run in parallel and may ask for the same sentence: each writes
        // its own file and renames it into place, so no test reads a half-written one.
        std::fs::rename(&converted, &wav).unwrap();
    }
    trim(read_16k(&wav))
}

/// `text` spoken by the Piper voice (tests/tools/piper_say.py, the venv's onnxruntime, phonemes
/// from the espeak-ng program), as 16 kHz mono f32. With `pause = Some((prefix, ms))` a silence
/// is put inside the sentence after `prefix`; the cut's offset (ns) is returned too.
pub fn piper(text: &str, pause: Option<(&str, u64)>) -> (Vec<f32>, Option<u64>) {
    let dir = scratch_dir("piper-16k-nodither");
    let mut name: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    if let Some((prefix, ms)) = pause {
        name.push_str(&format!("-pause{}-{ms}", prefix.split_whitespace().count()));
    }
    let raw = unique(&dir.join(format!("{name}.piper.wav")));
    let wav = dir.join(format!("{name}.wav"));
    let cut_file = dir.join(format!("{name}.cut"));
    if !wav.is_file() {
        let python = std::env::var("PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| interaction_runtime::cache_root().join("venv/bin/python"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/piper_say.py");
        let mut command = Command::new(&python);
        command.arg(&script).arg(&raw).arg(text);
        if let Some((prefix, ms)) = pause {
            command.arg(prefix).arg(ms.to_string());
        }
        let output = test_audio::run(&mut command).unwrap();
        // Own files renamed into place, the WAV last (see `espeak`).
        let cut_written = unique(&cut_file);
        std::fs::write(&cut_written, &output.stdout).unwrap();
        std::fs::rename(&cut_written, &cut_file).unwrap();
        let converted = unique(&wav);
        test_audio::to_16k(&raw, &converted, &[]).unwrap();
        std::fs::rename(&converted, &wav).unwrap();
    }
    let cut = std::fs::read_to_string(&cut_file)
        .ok()
        .and_then(|s| s.trim().strip_prefix("cut=").map(str::to_owned))
        .and_then(|s| s.parse::<f64>().ok())
        .map(|seconds| (seconds * 1e9) as u64);
    (read_16k(&wav), cut)
}

/// The samples of a WAV as 16 kHz mono f32.
pub fn read_16k(wav: &Path) -> Vec<f32> {
    test_audio::read_16k(wav, &[]).unwrap()
}

fn trim(samples: Vec<f32>) -> Vec<f32> {
    let loud = |s: &f32| s.abs() > 0.01;
    let first = samples.iter().position(loud).unwrap_or(0);
    let last = samples.iter().rposition(loud).map_or(0, |i| i + 1);
    samples[first..last.max(first)].to_vec()
}

/// A script: speech and silence in order, with the time every part starts and ends.
#[derive(Debug, Default, Clone)]
pub struct Script {
    pub audio: Vec<f32>,
    /// (text, start ns, end ns) of each spoken part.
    pub spoken: Vec<(String, u64, u64)>,
}

impl Script {
    pub fn silence(mut self, ms: u64) -> Self {
        self.audio
            .extend(std::iter::repeat_n(0.0, ms as usize * RATE / 1000));
        self
    }

    pub fn say(mut self, text: &str) -> Self {
        let start = self.now();
        self.audio.extend(espeak(text));
        let end = self.now();
        self.spoken.push((text.to_owned(), start, end));
        self
    }

    /// `text` in the Piper voice.
    pub fn piper(mut self, text: &str) -> Self {
        let start = self.now();
        self.audio.extend(piper(text, None).0);
        let end = self.now();
        self.spoken.push((text.to_owned(), start, end));
        self
    }

    /// `text` in the Piper voice with a pause of `ms` inside it after `prefix`: two spoken
    /// parts (before and after the pause).
    pub fn piper_with_pause(mut self, text: &str, prefix: &str, ms: u64) -> Self {
        let start = self.now();
        let (audio, cut) = piper(text, Some((prefix, ms)));
        let cut = cut.expect("the cut time");
        self.audio.extend(audio);
        let end = self.now();
        self.spoken.push((prefix.to_owned(), start, start + cut));
        self.spoken.push((
            text[prefix.len()..].trim().to_owned(),
            start + cut + ms * MS,
            end,
        ));
        self
    }

    pub fn now(&self) -> u64 {
        self.audio.len() as u64 * 1_000_000_000 / RATE as u64
    }

    /// Pads with silence to a whole number of micro-turns.
    pub fn whole_turns(mut self) -> Self {
        let rest = self.audio.len() % TURN_SAMPLES;
        if rest != 0 {
            self.audio
                .extend(std::iter::repeat_n(0.0, TURN_SAMPLES - rest));
        }
        self
    }
}

/// A text item to put into micro-turn `turn`.
#[derive(Debug, Clone)]
pub struct Item {
    pub turn: usize,
    pub pad: String,
    pub flags: u32,
    pub text: String,
    pub fields: Vec<(String, String)>,
}

/// A reasoning result for `request` in micro-turn `turn` (the sidecar's format).
pub fn result_item(turn: usize, request: u64, text: &str) -> Item {
    Item {
        turn,
        pad: "text_0".into(),
        flags: packet::text_flags::LOOPBACK,
        text: text.into(),
        fields: vec![
            ("request_id".into(), request.to_string()),
            ("seq".into(), "0".into()),
            ("final".into(), "true".into()),
            ("delta".into(), text.into()),
            ("error".into(), "null".into()),
        ],
    }
}

/// Micro-turn packets of 200 ms for `tracks` (name, audio), all the same length.
pub fn packets(tracks: &[(&str, &[f32])], items: &[Item]) -> Vec<gst::Buffer> {
    let longest = tracks.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    let turns = longest.div_ceil(TURN_SAMPLES);
    let mut out = Vec::with_capacity(turns);
    let mut chunk = vec![0.0f32; TURN_SAMPLES];
    for k in 0..turns {
        let mut flags = 0;
        if k == 0 {
            flags |= packet_flags::DISCONT;
        }
        let header = Header {
            turn_index: k as u64,
            start: k as u64 * TURN_NS,
            duration: TURN_NS,
            audio_rate: RATE as u32,
            flags,
            video_flags: 0,
            video_age: packet::NO_VIDEO_AGE,
            samples_per_track: TURN_SAMPLES as u32,
        };
        let mut bytes = Vec::new();
        let mut writer = PacketWriter::begin(&mut bytes, &header);
        for (name, audio) in tracks {
            chunk.fill(0.0);
            let from = (k * TURN_SAMPLES).min(audio.len());
            let to = ((k + 1) * TURN_SAMPLES).min(audio.len());
            chunk[..to - from].copy_from_slice(&audio[from..to]);
            writer.audio_track(name, 0, 0, &chunk).expect("audio track");
        }
        for item in items.iter().filter(|i| i.turn == k) {
            writer
                .text_item(
                    &item.pad,
                    item.flags,
                    0,
                    &item.text,
                    item.fields.iter().map(|(a, b)| (a.as_str(), b.as_str())),
                )
                .expect("text item");
        }
        writer.finish();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_nseconds(header.start));
            buffer.set_duration(gst::ClockTime::from_nseconds(TURN_NS));
        }
        out.push(buffer);
    }
    out
}

/// What came out of one source pad, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Text {
        pts: u64,
        duration: Option<u64>,
        text: String,
    },
    Speak(u64),
    Yield(Option<u64>),
    Pause(Option<u64>),
    Resume(Option<u64>),
    Backchannel(String),
    Eos,
}

/// Everything the element produced in one run.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub speech: Vec<Out>,
    pub transcript: Vec<Out>,
    pub reasoning: Vec<Out>,
    /// Element messages of the element: (name, structure).
    pub messages: Vec<gst::Structure>,
    pub step_latency: Option<gst::Structure>,
    /// Upstream *progress* events seen on the speech pad.
    pub progress: Vec<Progress>,
}

impl Run {
    pub fn messages(&self, name: &str) -> Vec<&gst::Structure> {
        self.messages.iter().filter(|m| m.name() == name).collect()
    }

    pub fn captions(&self) -> Vec<(u64, String)> {
        self.transcript
            .iter()
            .filter_map(|o| match o {
                Out::Text { pts, text, .. } => Some((*pts, text.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn contexts(&self) -> Vec<interaction_protocol::context::ContextPackage> {
        self.reasoning
            .iter()
            .filter_map(|o| match o {
                Out::Text { text, .. } => Some(
                    interaction_protocol::context::ContextPackage::parse(text.as_bytes())
                        .expect("a valid context package"),
                ),
                _ => None,
            })
            .collect()
    }
}

pub fn running_time(message: &gst::Structure) -> u64 {
    message.get::<u64>("running-time").expect("running-time")
}

pub fn record(pad: &gst::Pad, into: Arc<Mutex<Vec<Out>>>) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let mut out = into.lock().unwrap();
            match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    let map = buffer.map_readable().unwrap();
                    out.push(Out::Text {
                        pts: buffer.pts().map_or(u64::MAX, |t| t.nseconds()),
                        duration: buffer.duration().map(|t| t.nseconds()),
                        text: String::from_utf8_lossy(&map).into_owned(),
                    });
                }
                Some(gst::PadProbeData::Event(event)) => {
                    if let Some(speak) = Speak::parse(event) {
                        out.push(Out::Speak(speak.utterance_id));
                    } else if let Some(y) = Yield::parse(event) {
                        out.push(Out::Yield(y.utterance_id));
                    } else if let Some(p) = Pause::parse(event) {
                        out.push(Out::Pause(p.utterance_id));
                    } else if let Some(r) = Resume::parse(event) {
                        out.push(Out::Resume(r.utterance_id));
                    } else if let Some(b) = Backchannel::parse(event) {
                        out.push(Out::Backchannel(b.text));
                    } else if event.type_() == gst::EventType::Eos {
                        out.push(Out::Eos);
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// The element with the given properties (strings parsed as in gst-launch).
pub fn element(properties: &[(&str, &str)]) -> gst::Element {
    init();
    let element = gst::ElementFactory::make("interactionmodel")
        .build()
        .expect("interactionmodel");
    for (name, value) in properties {
        element.set_property_from_str(name, value);
    }
    element
}

/// Runs `buffers` through `appsrc ! element` (three fakesinks), non-live, and collects
/// everything. Panics on a pipeline error.
pub fn run_element(element: &gst::Element, buffers: Vec<gst::Buffer>) -> Run {
    run_element_with(element, buffers, None)
}

/// As [`run_element`], with `speech_sink` (for example `speechsynth`) between the speech pad
/// and its fakesink; the upstream *progress* events it sends are recorded in `progress`.
pub fn run_element_with(
    element: &gst::Element,
    buffers: Vec<gst::Buffer>,
    speech_sink: Option<gst::Element>,
) -> Run {
    init();
    let pipeline = gst::Pipeline::new();
    let caps = gst::Caps::builder(packet::CAPS_NAME)
        .field(packet::FIELD_VERSION, 1i32)
        .field(packet::FIELD_TURN_DURATION, TURN_NS)
        .field(packet::FIELD_AUDIO_RATE, RATE as i32)
        .field(packet::FIELD_AUDIO_CHANNELS, 1i32)
        .field(packet::FIELD_VIDEO_WIDTH, 0i32)
        .field(packet::FIELD_VIDEO_HEIGHT, 0i32)
        .build();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    pipeline.add(&src).unwrap();
    pipeline.add(element).unwrap();
    src.link(element).unwrap();
    let outs: Vec<Arc<Mutex<Vec<Out>>>> = (0..3).map(|_| Arc::default()).collect();
    let progress: Arc<Mutex<Vec<Progress>>> = Arc::default();
    for (pad_name, out) in ["speech", "transcript", "reasoning"].iter().zip(&outs) {
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        let pad = element.static_pad(pad_name).unwrap();
        record(&pad, out.clone());
        match (&speech_sink, *pad_name) {
            (Some(chain), "speech") => {
                pipeline.add(chain).unwrap();
                pad.link(&chain.static_pad("sink").unwrap()).unwrap();
                chain.link(&sink).unwrap();
                let progress = progress.clone();
                pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                    if let Some(gst::PadProbeData::Event(event)) = &info.data
                        && let Some(p) = Progress::parse(event)
                    {
                        progress.lock().unwrap().push(p);
                    }
                    gst::PadProbeReturn::Ok
                });
            }
            _ => {
                pad.link(&sink.static_pad("sink").unwrap()).unwrap();
            }
        }
    }
    let bus = pipeline.bus().unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .expect("the pipeline starts");
    for buffer in buffers {
        src.push_buffer(buffer).expect("push a packet");
    }
    src.end_of_stream().unwrap();
    let mut messages = Vec::new();
    loop {
        let message = bus
            .timed_pop(gst::ClockTime::from_seconds(120))
            .expect("the pipeline finishes within 120 s");
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                panic!("pipeline error: {} ({:?})", e.error(), e.debug())
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && message.src().is_some_and(|s| s == element)
                {
                    messages.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    let step_latency = element.property::<Option<gst::Structure>>("step-latency");
    pipeline.set_state(gst::State::Null).unwrap();
    let take = |i: usize| outs[i].lock().unwrap().clone();
    Run {
        speech: take(0),
        transcript: take(1),
        reasoning: take(2),
        messages,
        step_latency,
        progress: progress.lock().unwrap().clone(),
    }
}

/// Starts `element` alone to PAUSED and returns the error message text if that fails.
pub fn start_error(element: &gst::Element) -> Option<String> {
    init();
    let pipeline = gst::Pipeline::new();
    pipeline.add(element).unwrap();
    let bus = pipeline.bus().unwrap();
    let result = pipeline.set_state(gst::State::Paused);
    let text = bus
        .iter_timed(gst::ClockTime::ZERO)
        .find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!(
                "{} | {}",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            )),
            _ => None,
        });
    pipeline.set_state(gst::State::Null).unwrap();
    match result {
        Ok(_) => {
            assert!(text.is_none(), "started but posted an error: {text:?}");
            None
        }
        Err(_) => Some(text.expect("a failed start posts an error message")),
    }
}
