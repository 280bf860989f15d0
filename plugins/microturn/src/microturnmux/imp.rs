//! `microturnmux` implementation.
//!
//! Lock order: `settings`, then `pads`, then `state`. No lock is held across a push, a peer
//! query or a call into the parent class.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use interaction_protocol::packet::{self, packet_flags};

use super::VideoPolicy;
use crate::aligner::{self, Aligner, VideoAccumulator};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "microturnmux",
        gst::DebugColorFlags::empty(),
        Some("Micro-turn aligner"),
    )
});

const DEFAULT_TURN_DURATION: u64 = 200_000_000;
const MIN_TURN_DURATION: u64 = 20_000_000;
const MAX_TURN_DURATION: u64 = 2_000_000_000;
const DEFAULT_AUDIO_RATE: u32 = 16_000;
const DEFAULT_ALIGNMENT_THRESHOLD: u64 = 40_000_000;

#[derive(Debug, Clone, Copy)]
struct Settings {
    turn_duration: u64,
    audio_rate: u32,
    alignment_threshold: u64,
    video_policy: VideoPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            turn_duration: DEFAULT_TURN_DURATION,
            audio_rate: DEFAULT_AUDIO_RATE,
            alignment_threshold: DEFAULT_ALIGNMENT_THRESHOLD,
            video_policy: VideoPolicy::Latest,
        }
    }
}

impl Settings {
    fn aligner_policy(&self) -> aligner::VideoPolicy {
        match self.video_policy {
            VideoPolicy::Latest => aligner::VideoPolicy::Latest,
            VideoPolicy::All => aligner::VideoPolicy::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
    Text,
}

fn kind_of(pad_name: &str) -> Option<Kind> {
    if pad_name == "audio" || pad_name.starts_with("audio_") {
        Some(Kind::Audio)
    } else if pad_name == "video" {
        Some(Kind::Video)
    } else if pad_name.starts_with("text_") {
        Some(Kind::Text)
    } else {
        None
    }
}

/// What a sink pad's caps say about its buffers.
#[derive(Debug, Clone)]
enum InputFormat {
    AudioF32,
    AudioS16,
    Video(gst_video::VideoInfo),
    TextPlain,
    TextResult,
}

/// A video frame held until its turn: the input buffer itself when its rows are tightly
/// packed, a packed copy otherwise.
#[derive(Debug)]
pub enum Frame {
    Mapped {
        buffer: gst::MappedBuffer<gst::buffer::Readable>,
        offset: usize,
        len: usize,
    },
    Packed(Vec<u8>),
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Mapped {
                buffer,
                offset,
                len,
            } => &buffer.as_slice()[*offset..*offset + *len],
            Self::Packed(data) => data,
        }
    }
}

#[derive(Default)]
struct State {
    aligner: Option<Aligner<Frame>>,
    formats: HashMap<String, InputFormat>,
    /// Text and video pads: no buffer before this running time will come (items and gap
    /// events seen so far).
    covered: HashMap<String, u64>,
    /// Audio pads: samples of the head buffer already moved into the track.
    audio_offsets: HashMap<String, usize>,
    pool: Option<(gst::BufferPool, usize)>,
    /// Reused by `pull_inbox` (no allocation per turn).
    inbox_scratch: Vec<(Option<u64>, gst::Buffer)>,
}

/// A sink pad as the aggregate loop sees it: cloning one allocates nothing.
#[derive(Clone)]
struct PadEntry {
    pad: super::MicroturnPad,
    name: Arc<str>,
}

/// The sink pads, kept in step with pad requests and releases, and a vector the aggregate
/// loop reuses to walk them without holding this lock.
#[derive(Default)]
struct Pads {
    list: Vec<PadEntry>,
    scratch: Vec<PadEntry>,
}

#[derive(Default)]
pub struct MicroturnMux {
    /// The pipeline is live (from the latest latency query answered).
    live: std::sync::atomic::AtomicBool,
    settings: Mutex<Settings>,
    pads: Mutex<Pads>,
    state: Mutex<State>,
}

enum Step {
    Push {
        buffer: gst::Buffer,
        timed_out: bool,
    },
    NeedData,
    Eos,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later call into a panic.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Running time of a buffer's start in its pad's segment, in ns.
/// Takes the buffers (and gap events) of a loop-back text pad, and of every text pad of a live
/// pipeline, off the pad before the base class queues them. In a live pipeline the base class calls `aggregate` only when every pad that
/// ever had data has a buffer queued, or at the deadline: a sparse loop-back input (reasoning
/// results) would hold every turn until its deadline, while the audio pads, whose queues hold
/// only the `latency` property plus upstream latency, stop accepting data and the turn is
/// written with a hole. Diverted, the pad stays inactive and is ignored; its buffers wait in
/// the pad's inbox until the turn they fall in is written.
fn divert_text(pad: &super::MicroturnPad) {
    pad.add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::BUFFER_LIST
            | gst::PadProbeType::EVENT_DOWNSTREAM,
        |pad, info| {
            let Some(pad) = pad.downcast_ref::<super::MicroturnPad>() else {
                return gst::PadProbeReturn::Ok;
            };
            if !pad.imp().diverts() {
                return gst::PadProbeReturn::Ok;
            }
            let segment = pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|event| event.segment().downcast_ref::<gst::ClockTime>().cloned());
            let running_time = |buffer: &gst::BufferRef| {
                let pts = buffer.pts()?;
                segment
                    .as_ref()
                    .and_then(|segment| segment.to_running_time(pts))
                    .map(gst::ClockTime::nseconds)
            };
            // Taken and `Handled`: the chain function returns OK upstream and the base class
            // never sees the data.
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => {
                    if let Some(buffer) = info.take_buffer() {
                        pad.imp().push_inbox(running_time(&buffer), buffer);
                    }
                    gst::PadProbeReturn::Handled
                }
                Some(gst::PadProbeData::BufferList(_)) => {
                    if let Some(list) = info.take_buffer_list() {
                        for buffer in list.iter_owned() {
                            pad.imp().push_inbox(running_time(&buffer), buffer);
                        }
                    }
                    gst::PadProbeReturn::Handled
                }
                Some(gst::PadProbeData::Event(event)) if event.type_() == gst::EventType::Gap => {
                    gst::PadProbeReturn::Handled
                }
                _ => gst::PadProbeReturn::Ok,
            }
        },
    );
}

fn running_time(pad: &gst_base::AggregatorPad, buffer: &gst::BufferRef) -> Option<u64> {
    let segment = pad.segment();
    let segment = segment.downcast_ref::<gst::ClockTime>()?;
    let pts = buffer.pts()?;
    segment.to_running_time(pts).map(gst::ClockTime::nseconds)
}

fn audio_caps(rate: u32) -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format_list([gst_audio::AudioFormat::F32le, gst_audio::AudioFormat::S16le])
        .channels(1)
        .rate(rate as i32)
        .build()
}

fn audio_template_caps() -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format_list([gst_audio::AudioFormat::F32le, gst_audio::AudioFormat::S16le])
        .channels(1)
        .build()
}

fn video_template_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Rgb)
        .build()
}

fn text_template_caps() -> gst::Caps {
    let mut caps = gst::Caps::builder("text/x-raw")
        .field("format", "utf8")
        .build();
    caps.merge(gst::Caps::new_empty_simple(packet::RESULT_CAPS_NAME));
    caps
}

/// Fixed `video-width`/`video-height` in the downstream caps, if any.
fn downstream_video_size(caps: &gst::CapsRef) -> Option<(i32, i32)> {
    let structure = caps.structure(0)?;
    let width = structure.get::<i32>(packet::FIELD_VIDEO_WIDTH).ok()?;
    let height = structure.get::<i32>(packet::FIELD_VIDEO_HEIGHT).ok()?;
    (width > 0 && height > 0).then_some((width, height))
}

/// Splits a structured result (JSON object) into its text and its other members.
fn parse_result(bytes: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| format!("not JSON: {error}"))?;
    let serde_json::Value::Object(members) = value else {
        return Err("not a JSON object".into());
    };
    let mut text = None;
    let mut fields = Vec::with_capacity(members.len());
    for (key, value) in members {
        match (key.as_str(), value) {
            (packet::RESULT_TEXT_KEY, serde_json::Value::String(body)) => text = Some(body),
            (packet::RESULT_TEXT_KEY, _) => {
                return Err(format!(
                    "member \"{}\" is not a string",
                    packet::RESULT_TEXT_KEY
                ));
            }
            (_, serde_json::Value::String(value)) => fields.push((key, value)),
            (_, value) => fields.push((key, value.to_string())),
        }
    }
    let text = text.ok_or_else(|| format!("no \"{}\" member", packet::RESULT_TEXT_KEY))?;
    Ok((text, fields))
}

impl MicroturnMux {
    fn new_aligner(&self, settings: &Settings) -> Result<Aligner<Frame>, String> {
        let mut aligner = Aligner::new(
            settings.turn_duration,
            settings.audio_rate,
            settings.alignment_threshold,
        )?;
        for pad in self.obj().sink_pads() {
            let name = pad.name();
            match kind_of(&name) {
                Some(Kind::Audio) => aligner.add_audio(&name),
                Some(Kind::Video) => {
                    aligner.video = Some(VideoAccumulator::new(
                        settings.aligner_policy(),
                        settings.turn_duration,
                    ))
                }
                Some(Kind::Text) => aligner.add_text(&name),
                None => {}
            }
        }
        Ok(aligner)
    }

    fn reset(&self) -> Result<(), gst::ErrorMessage> {
        for entry in lock(&self.pads).list.iter() {
            entry.pad.imp().clear_inbox();
        }
        let settings = *lock(&self.settings);
        let mut aligner = self
            .new_aligner(&settings)
            .map_err(|message| gst::error_msg!(gst::LibraryError::Settings, ["{}", message]))?;
        let obj = self.obj();
        match obj.property::<gst_base::AggregatorStartTimeSelection>("start-time-selection") {
            gst_base::AggregatorStartTimeSelection::First => aligner.clear_origin(),
            gst_base::AggregatorStartTimeSelection::Set => {
                let start_time = obj.property::<u64>("start-time");
                aligner.set_origin(if start_time == u64::MAX {
                    0
                } else {
                    start_time
                });
            }
            _ => aligner.set_origin(0),
        }
        let mut state = lock(&self.state);
        let formats = std::mem::take(&mut state.formats);
        let pool = state.pool.take();
        // Caps stay valid across a flush; the pool is kept on purpose (no reallocation).
        *state = State {
            aligner: Some(aligner),
            formats,
            covered: HashMap::new(),
            audio_offsets: HashMap::new(),
            pool,
            inbox_scratch: Vec::new(),
        };
        Ok(())
    }

    /// Moves the samples the next turn needs from an audio pad's head buffer, starting at
    /// sample `offset` of that buffer, into its track. Returns the offset to go on from, or
    /// `None` when the buffer is used up. The buffer stays queued on the pad until then, so
    /// that the base class sees the pad as having data.
    fn feed_audio(
        &self,
        state: &mut State,
        pad: &gst_base::AggregatorPad,
        name: &str,
        buffer: &gst::Buffer,
        offset: usize,
    ) -> Result<Option<usize>, gst::FlowError> {
        let Some(aligner) = state.aligner.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let rate = aligner.rate();
        let bytes_per_sample = match state.formats.get(name) {
            Some(InputFormat::AudioF32) => 4,
            Some(InputFormat::AudioS16) => 2,
            _ => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ["pad {} has no accepted caps", name]
                );
                return Err(gst::FlowError::NotNegotiated);
            }
        };
        let Some(track) = aligner.audio.iter_mut().find(|t| t.name() == name) else {
            return Ok(None);
        };
        let stats = &mut aligner.stats;
        let first_chunk = offset == 0;
        let rt = if first_chunk {
            running_time(pad, buffer)
        } else {
            None
        };
        let discont = first_chunk && buffer.flags().contains(gst::BufferFlags::DISCONT);
        if buffer.flags().contains(gst::BufferFlags::GAP) {
            let count = if buffer.size() > 0 {
                (buffer.size() / bytes_per_sample) as u64
            } else {
                buffer
                    .duration()
                    .map_or(0, |duration| aligner::sample_at(duration.nseconds(), rate))
            };
            track.push_gap(rt, discont, count, stats);
            return Ok(None);
        }
        let total = buffer.size() / bytes_per_sample;
        let wanted = track.samples_needed().max(1) as usize;
        let end = total.min(offset + wanted);
        if end > offset {
            let map = buffer.map_readable().map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ["cannot map an audio buffer"]
                );
                gst::FlowError::Error
            })?;
            let bytes = &map[offset * bytes_per_sample..end * bytes_per_sample];
            if bytes_per_sample == 4 {
                let samples = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                track.push(rt, discont, samples, stats);
            } else {
                let samples = bytes
                    .chunks_exact(2)
                    .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0);
                track.push(rt, discont, samples, stats);
            }
        }
        Ok((end < total).then_some(end))
    }

    fn feed_text(
        &self,
        state: &mut State,
        name: &str,
        running_time: u64,
        buffer: &gst::Buffer,
    ) -> Result<(), gst::FlowError> {
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ["cannot map a text buffer"]);
            gst::FlowError::Error
        })?;
        let item = match state.formats.get(name) {
            Some(InputFormat::TextResult) => parse_result(&map),
            _ => match std::str::from_utf8(&map) {
                Ok(text) => Ok((text.trim_end_matches('\0').to_owned(), Vec::new())),
                Err(error) => Err(format!("not UTF-8: {error}")),
            },
        };
        match item {
            Ok((text, fields)) => {
                if let Some(aligner) = state.aligner.as_mut()
                    && let Some(track) = aligner.text_mut(name)
                {
                    track.push(running_time, text, fields);
                }
            }
            Err(error) => {
                // Bad text is the sender's problem, not a reason to stop the conversation.
                gst::warning!(CAT, imp = self, "pad {name}: dropping a text item: {error}");
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Decode,
                    ["pad {} sent a text item that is dropped: {}", name, error]
                );
            }
        }
        Ok(())
    }

    fn feed_video(
        &self,
        state: &mut State,
        running_time: u64,
        buffer: gst::Buffer,
    ) -> Result<(), gst::FlowError> {
        let Some(InputFormat::Video(info)) = state.formats.get("video").cloned() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["pad video has no accepted caps"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let width = info.width();
        let height = info.height();
        let row = width as usize * 3;
        let len = row * height as usize;
        let tight = info.stride()[0] as usize == row
            && buffer.n_memory() == 1
            && buffer.meta::<gst_video::VideoMeta>().is_none();
        let frame = if tight {
            let offset = info.offset()[0];
            let mapped = buffer.into_mapped_buffer_readable().map_err(|_| {
                gst::element_imp_error!(self, gst::ResourceError::Read, ["cannot map a frame"]);
                gst::FlowError::Error
            })?;
            if mapped.len() < offset + len {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    [
                        "a {}x{} RGB frame holds only {} bytes",
                        width,
                        height,
                        mapped.len()
                    ]
                );
                return Err(gst::FlowError::Error);
            }
            Frame::Mapped {
                buffer: mapped,
                offset,
                len,
            }
        } else {
            let video_frame =
                gst_video::VideoFrame::from_buffer_readable(buffer, &info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["cannot map a {}x{} RGB frame", width, height]
                    );
                    gst::FlowError::Error
                })?;
            let stride = video_frame.plane_stride()[0] as usize;
            let plane = video_frame
                .plane_data(0)
                .map_err(|_| gst::FlowError::Error)?;
            let mut packed = Vec::with_capacity(len);
            for y in 0..height as usize {
                let start = y * stride;
                let Some(line) = plane.get(start..start + row) else {
                    return Err(gst::FlowError::Error);
                };
                packed.extend_from_slice(line);
            }
            Frame::Packed(packed)
        };
        if let Some(aligner) = state.aligner.as_mut() {
            let (window_start, _) = aligner.window();
            if let Some(video) = aligner.video.as_mut() {
                video.push(
                    running_time,
                    width,
                    height,
                    frame,
                    window_start,
                    &mut aligner.stats,
                );
            }
        }
        Ok(())
    }

    /// Moves buffers from a text or video pad into the aligner up to the window end; returns
    /// whether the pad is complete for the window.
    /// Feeds the loop-back buffers diverted off `pad` that start before the window's end.
    fn pull_inbox(
        &self,
        state: &mut State,
        pad: &super::MicroturnPad,
        name: &str,
        window_start: u64,
        window_end: u64,
    ) -> Result<(), gst::FlowError> {
        let mut items = std::mem::take(&mut state.inbox_scratch);
        pad.imp().take_inbox_before(window_end, &mut items);
        let mut result = Ok(());
        for (rt, buffer) in items.drain(..) {
            if result.is_ok() {
                result = self.feed_text(state, name, rt.unwrap_or(window_start), &buffer);
            }
        }
        state.inbox_scratch = items;
        result
    }

    fn pull_timed(
        &self,
        state: &mut State,
        pad: &gst_base::AggregatorPad,
        name: &str,
        kind: Kind,
        window_start: u64,
        window_end: u64,
    ) -> Result<bool, gst::FlowError> {
        while let Some(buffer) = pad.peek_buffer() {
            let rt = running_time(pad, &buffer).unwrap_or(window_start);
            let is_gap = buffer.flags().contains(gst::BufferFlags::GAP) && buffer.size() == 0;
            if rt >= window_end {
                return Ok(true);
            }
            pad.drop_buffer();
            let covered = if is_gap {
                rt + buffer.duration().map_or(0, gst::ClockTime::nseconds)
            } else {
                rt
            };
            match state.covered.get_mut(name) {
                Some(entry) => *entry = (*entry).max(covered),
                None => {
                    state.covered.insert(name.to_owned(), covered);
                }
            }
            if is_gap {
                continue;
            }
            match kind {
                Kind::Text => self.feed_text(state, name, rt, &buffer)?,
                Kind::Video => self.feed_video(state, rt, buffer)?,
                Kind::Audio => {}
            }
        }
        let covered = state.covered.get(name).copied().unwrap_or(0);
        Ok(covered >= window_end || (pad.is_eos() && !pad.has_buffer()))
    }

    fn output_buffer(
        &self,
        pool: &mut Option<(gst::BufferPool, usize)>,
        bytes: &[u8],
    ) -> Result<gst::Buffer, gst::FlowError> {
        if pool.as_ref().is_none_or(|(_, size)| *size < bytes.len()) {
            if let Some((old, _)) = pool.take() {
                let _ = old.set_active(false);
            }
            let size = bytes.len() + bytes.len() / 4 + 4096;
            let new_pool = gst::BufferPool::new();
            let mut config = new_pool.config();
            config.set_params(None, size as u32, 2, 0);
            new_pool
                .set_config(config)
                .map_err(|_| gst::FlowError::Error)?;
            new_pool
                .set_active(true)
                .map_err(|_| gst::FlowError::Error)?;
            *pool = Some((new_pool, size));
        }
        let Some((pool, _)) = pool.as_ref() else {
            return Err(gst::FlowError::Error);
        };
        let mut buffer = pool.acquire_buffer(None)?;
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_size(bytes.len());
            let mut map = buffer.map_writable().map_err(|_| gst::FlowError::Error)?;
            map.copy_from_slice(bytes);
        }
        Ok(buffer)
    }

    fn step(&self, timeout: bool) -> Result<Step, gst::FlowError> {
        // Walk a copy of the pad list (reused: no allocation in steady state), so that pads
        // can be requested or released meanwhile.
        let mut pads = {
            let mut guard = lock(&self.pads);
            let mut scratch = std::mem::take(&mut guard.scratch);
            scratch.clear();
            scratch.extend(guard.list.iter().cloned());
            scratch
        };
        let result = self.step_with(&pads, timeout);
        pads.clear();
        lock(&self.pads).scratch = pads;
        result
    }

    fn step_with(&self, pads: &[PadEntry], timeout: bool) -> Result<Step, gst::FlowError> {
        let obj = self.obj();
        let mut state = lock(&self.state);
        if state.aligner.as_ref().is_some_and(|a| a.origin().is_none()) {
            // start-time-selection=first: turn 0 starts at the earliest input.
            let first = pads
                .iter()
                .filter_map(|entry| {
                    let pad = entry.pad.upcast_ref::<gst_base::AggregatorPad>();
                    pad.peek_buffer()
                        .and_then(|buffer| running_time(pad, &buffer))
                })
                .min();
            match (first, state.aligner.as_mut()) {
                (Some(first), Some(aligner)) => {
                    gst::debug!(CAT, imp = self, "turn 0 starts at {first} ns");
                    aligner.set_origin(first);
                }
                _ => {
                    let all_eos = pads.iter().all(|entry| entry.pad.is_eos());
                    return Ok(if all_eos { Step::Eos } else { Step::NeedData });
                }
            }
        }
        let Some((window_start, window_end)) = state.aligner.as_ref().map(Aligner::window) else {
            return Err(gst::FlowError::Flushing);
        };
        let mut all_ready = true;
        // Inputs that pace the turns (audio, video, text the base class queues) and the live
        // text taken off its pads, which is never waited for: `(any, all ended)` of each.
        let (mut paced, mut paced_eos) = (false, true);
        let mut live_text_eos = true;
        for entry in pads {
            let pad = &entry.pad;
            let name = &*entry.name;
            let loopback = pad.imp().is_loopback();
            let agg_pad = pad.upcast_ref::<gst_base::AggregatorPad>();
            let (ready, eos) = match kind_of(name) {
                Some(Kind::Audio) => {
                    loop {
                        let complete = state
                            .aligner
                            .as_mut()
                            .and_then(|a| a.audio_mut(name))
                            .is_none_or(|track| track.turn_complete());
                        if complete {
                            break;
                        }
                        let Some(buffer) = agg_pad.peek_buffer() else {
                            break;
                        };
                        let offset = state.audio_offsets.get(name).copied();
                        let next = self.feed_audio(
                            &mut state,
                            agg_pad,
                            name,
                            &buffer,
                            offset.unwrap_or(0),
                        )?;
                        match state.audio_offsets.get_mut(name) {
                            Some(slot) => *slot = next.unwrap_or(0),
                            None => {
                                state
                                    .audio_offsets
                                    .insert(name.to_string(), next.unwrap_or(0));
                            }
                        }
                        if next.is_none() {
                            agg_pad.drop_buffer();
                        }
                    }
                    let eos = agg_pad.is_eos() && !agg_pad.has_buffer();
                    let track = state.aligner.as_mut().and_then(|a| a.audio_mut(name));
                    match track {
                        Some(track) => {
                            track.set_eos(eos);
                            (track.turn_complete() || eos, eos)
                        }
                        None => (true, true),
                    }
                }
                Some(kind @ (Kind::Video | Kind::Text)) => {
                    if kind == Kind::Text
                        && let Some(track) = state.aligner.as_mut().and_then(|a| a.text_mut(name))
                    {
                        track.set_loopback(loopback);
                    }
                    let diverted = kind == Kind::Text && pad.imp().diverts();
                    if diverted {
                        self.pull_inbox(&mut state, pad, name, window_start, window_end)?;
                    }
                    // Live text is never waited for: what comes after its turn goes into the
                    // next one with the LATE flag.
                    let ready =
                        self.pull_timed(&mut state, agg_pad, name, kind, window_start, window_end)?
                            || diverted;
                    let eos = agg_pad.is_eos() && !agg_pad.has_buffer();
                    if diverted && !loopback {
                        live_text_eos &= eos;
                        all_ready &= ready;
                        continue;
                    }
                    (ready, eos)
                }
                None => (true, true),
            };
            if !loopback {
                all_ready &= ready;
                paced = true;
                paced_eos &= eos;
            }
        }
        // Once every input that paces the turns has ended, live text no longer holds back
        // the end either: nothing would pace the turns any more, and the aligner would write
        // them as fast as downstream takes them until the text ends. Without paced inputs
        // (text only), all the text must end.
        let all_eos = if paced { paced_eos } else { live_text_eos };

        let State { aligner, pool, .. } = &mut *state;
        let Some(aligner) = aligner.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let timed_out = timeout && !all_ready;
        // Loop-back text that keeps arriving after every input ended must not keep the aligner
        // writing turns (at EOS nothing waits for the clock: it would spin).
        if all_eos && !aligner.has_pending_input() {
            gst::debug!(
                CAT,
                imp = self,
                "all inputs ended after {} turns",
                aligner.next_turn()
            );
            return Ok(Step::Eos);
        }
        if !(all_ready || timeout) {
            return Ok(Step::NeedData);
        }
        let turn = aligner.next_turn();
        let duration = aligner.turn_duration();
        let turn_start = aligner.window().0;
        let bytes = aligner.write_turn(timed_out).map_err(|error| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ["cannot write turn {}: {}", turn, error]
            );
            gst::FlowError::Error
        })?;
        let discont = bytes.get(36..40).is_some_and(|flags| {
            u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]) & packet_flags::DISCONT
                != 0
        });
        let mut buffer = self.output_buffer(pool, bytes)?;
        drop(state);
        {
            let src_segment = obj.src_pad().segment();
            let pts = src_segment
                .downcast_ref::<gst::ClockTime>()
                .and_then(|segment| {
                    segment.position_from_running_time(gst::ClockTime::from_nseconds(turn_start))
                })
                .unwrap_or(gst::ClockTime::from_nseconds(turn_start));
            let buffer = buffer.make_mut();
            buffer.set_pts(pts);
            buffer.set_dts(gst::ClockTime::NONE);
            buffer.set_duration(gst::ClockTime::from_nseconds(duration));
            buffer.set_offset(turn);
            buffer.set_offset_end(turn + 1);
            if discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
        }
        Ok(Step::Push { buffer, timed_out })
    }

    /// After refused caps, the pad's buffers must not be read with the previous format.
    fn forget_format(&self, pad: &gst_base::AggregatorPad) {
        if let Some(pad) = pad.downcast_ref::<super::MicroturnPad>() {
            pad.imp().set_audio_format(0, 0);
        }
        lock(&self.state).formats.remove(pad.name().as_str());
    }

    fn settings_changed_latency(&self, turn_duration: u64) {
        let latency = gst::ClockTime::from_nseconds(turn_duration);
        self.obj().set_latency(latency, Some(latency));
        let _ = self
            .obj()
            .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MicroturnMux {
    const NAME: &'static str = "GstMicroturnMux";
    type Type = super::MicroturnMux;
    type ParentType = gst_base::Aggregator;
    type Interfaces = (gst::ChildProxy,);
}

impl ObjectImpl for MicroturnMux {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt64::builder("turn-duration")
                    .nick("Turn duration")
                    .blurb(
                        "Length of one micro-turn in ns; must be a whole number of samples at \
                         audio-rate. Adds one turn to the latency. Applied at the next start",
                    )
                    .minimum(MIN_TURN_DURATION)
                    .maximum(MAX_TURN_DURATION)
                    .default_value(DEFAULT_TURN_DURATION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("audio-rate")
                    .nick("Audio rate")
                    .blurb("Sample rate of every audio pad and of the packet (no latency)")
                    .minimum(1000)
                    .maximum(192_000)
                    .default_value(DEFAULT_AUDIO_RATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("alignment-threshold")
                    .nick("Alignment threshold")
                    .blurb(
                        "Audio timestamps within this many ns of the expected position are \
                         taken as contiguous; further off, the aligner re-syncs (silence and the \
                         gap flag for a hole). No latency",
                    )
                    .maximum(10_000_000_000)
                    .default_value(DEFAULT_ALIGNMENT_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("video-policy", VideoPolicy::Latest)
                    .nick("Video policy")
                    .blurb("Which frames of a window go into the packet (no latency)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Counters: turns, timed-out-turns, late-samples, gap-samples, \
                         late-frames, late-text, ignored-jumps",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        let running = lock(&self.state).aligner.is_some();
        if running
            && matches!(
                pspec.name(),
                "turn-duration" | "audio-rate" | "alignment-threshold"
            )
        {
            gst::warning!(
                CAT,
                imp = self,
                "{} can only change in the NULL or READY state; ignored",
                pspec.name()
            );
            return;
        }
        match pspec.name() {
            "turn-duration" => {
                let turn_duration = value.get().unwrap_or(DEFAULT_TURN_DURATION);
                if turn_duration != settings.turn_duration {
                    settings.turn_duration = turn_duration;
                    drop(settings);
                    self.settings_changed_latency(turn_duration);
                }
            }
            "audio-rate" => settings.audio_rate = value.get().unwrap_or(DEFAULT_AUDIO_RATE),
            "alignment-threshold" => {
                settings.alignment_threshold = value.get().unwrap_or(DEFAULT_ALIGNMENT_THRESHOLD)
            }
            "video-policy" => {
                settings.video_policy = value.get().unwrap_or_default();
                let policy = settings.aligner_policy();
                drop(settings);
                if let Some(video) = lock(&self.state)
                    .aligner
                    .as_mut()
                    .and_then(|a| a.video.as_mut())
                {
                    video.set_policy(policy);
                }
            }
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "turn-duration" => lock(&self.settings).turn_duration.to_value(),
            "audio-rate" => lock(&self.settings).audio_rate.to_value(),
            "alignment-threshold" => lock(&self.settings).alignment_threshold.to_value(),
            "video-policy" => lock(&self.settings).video_policy.to_value(),
            "stats" => {
                let stats = lock(&self.state)
                    .aligner
                    .as_ref()
                    .map(|a| a.stats)
                    .unwrap_or_default();
                gst::Structure::builder("microturnmux-stats")
                    .field("turns", stats.turns)
                    .field("timed-out-turns", stats.timed_out_turns)
                    .field("late-samples", stats.late_samples)
                    .field("gap-samples", stats.gap_samples)
                    .field("late-frames", stats.late_frames)
                    .field("late-text", stats.late_text)
                    .field("ignored-jumps", stats.ignored_jumps)
                    .build()
                    .to_value()
            }
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let template = obj
            .pad_template("audio")
            .expect("the audio pad template is registered in pad_templates()");
        let pad = gst::PadBuilder::<super::MicroturnPad>::from_template(&template)
            .name("audio")
            .build();
        obj.add_pad(&pad)
            .expect("a new element has no pad named audio yet");
        lock(&self.pads).list.push(PadEntry {
            pad,
            name: Arc::from("audio"),
        });
        let latency = gst::ClockTime::from_nseconds(DEFAULT_TURN_DURATION);
        obj.set_latency(latency, Some(latency));
        // A live loop-back pad never gets a buffer into the base class's queue (they are
        // diverted), so once the first deadline has passed the base class stops waiting for it.
        obj.set_ignore_inactive_pads(true);
    }
}

impl GstObjectImpl for MicroturnMux {}

impl ElementImpl for MicroturnMux {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Micro-turn aligner",
                "Muxer/Audio/Video/Text",
                "Cuts audio, video and text on the pipeline clock into time-aligned micro-turn \
                 packets (application/x-microturn), one per turn, on time",
                "gst-interaction developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let pad_type = super::MicroturnPad::static_type();
            let src = gst::PadTemplate::with_gtype(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &gst::Caps::new_empty_simple(packet::CAPS_NAME),
                gst_base::AggregatorPad::static_type(),
            )
            .expect("valid src template");
            let audio = gst::PadTemplate::with_gtype(
                "audio",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &audio_template_caps(),
                pad_type,
            )
            .expect("valid audio template");
            let extra_audio = gst::PadTemplate::with_gtype(
                "audio_%u",
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &audio_template_caps(),
                pad_type,
            )
            .expect("valid audio_%u template");
            let video = gst::PadTemplate::with_gtype(
                "video",
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &video_template_caps(),
                pad_type,
            )
            .expect("valid video template");
            let text = gst::PadTemplate::with_gtype(
                "text_%u",
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &text_template_caps(),
                pad_type,
            )
            .expect("valid text_%u template");
            vec![src, audio, extra_audio, video, text]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let pad = self.parent_request_new_pad(templ, name, caps)?;
        let pad_name = pad.name();
        if let Ok(microturn_pad) = pad.clone().downcast::<super::MicroturnPad>() {
            if kind_of(&pad_name) == Some(Kind::Text) {
                microturn_pad
                    .imp()
                    .set_live(self.live.load(std::sync::atomic::Ordering::Relaxed));
                divert_text(&microturn_pad);
            }
            lock(&self.pads).list.push(PadEntry {
                pad: microturn_pad,
                name: Arc::from(pad_name.as_str()),
            });
        }
        {
            let settings = *lock(&self.settings);
            let mut state = lock(&self.state);
            if let Some(aligner) = state.aligner.as_mut() {
                match kind_of(&pad_name) {
                    Some(Kind::Audio) => aligner.add_audio(&pad_name),
                    Some(Kind::Video) => {
                        aligner.video = Some(VideoAccumulator::new(
                            settings.aligner_policy(),
                            settings.turn_duration,
                        ))
                    }
                    Some(Kind::Text) => aligner.add_text(&pad_name),
                    None => {}
                }
            }
        }
        self.obj().child_added(&pad, &pad_name);
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let name = pad.name();
        lock(&self.pads)
            .list
            .retain(|entry| entry.pad.upcast_ref::<gst::Pad>() != pad);
        {
            let mut state = lock(&self.state);
            if let Some(aligner) = state.aligner.as_mut() {
                aligner.remove(&name);
            }
            state.formats.remove(name.as_str());
            state.covered.remove(name.as_str());
            state.audio_offsets.remove(name.as_str());
        }
        self.obj().child_removed(pad, &name);
        self.parent_release_pad(pad);
    }
}

impl AggregatorImpl for MicroturnMux {
    fn create_new_pad(
        &self,
        templ: &gst::PadTemplate,
        req_name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst_base::AggregatorPad> {
        let obj = self.obj();
        let template_name = templ.name_template().to_string();
        let name = match template_name.as_str() {
            "video" => {
                if obj.static_pad("video").is_some() {
                    gst::warning!(CAT, imp = self, "there is already a video pad");
                    return None;
                }
                "video".to_owned()
            }
            "audio_%u" | "text_%u" => {
                let prefix = &template_name[..template_name.len() - 2];
                let requested = req_name.filter(|name| {
                    name.strip_prefix(prefix)
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                });
                match requested {
                    Some(name) if obj.static_pad(name).is_none() => name.to_owned(),
                    Some(name) => {
                        gst::warning!(CAT, imp = self, "pad {name} exists already");
                        return None;
                    }
                    None => (0u32..)
                        .map(|n| format!("{prefix}{n}"))
                        .find(|name| obj.static_pad(name).is_none())?,
                }
            }
            _ => return None,
        };
        let pad = gst::PadBuilder::<super::MicroturnPad>::from_template(templ)
            .name(name.as_str())
            .build();
        Some(pad.upcast())
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.reset()?;
        let turn_duration = lock(&self.settings).turn_duration;
        let latency = gst::ClockTime::from_nseconds(turn_duration);
        self.obj().set_latency(latency, Some(latency));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let mut state = lock(&self.state);
        if let Some((pool, _)) = state.pool.take() {
            let _ = pool.set_active(false);
        }
        *state = State::default();
        Ok(())
    }

    fn flush(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        gst::debug!(CAT, imp = self, "flush: starting again at turn 0");
        self.reset().map_err(|_| gst::FlowError::Error)?;
        self.parent_flush()
    }

    fn next_time(&self) -> Option<gst::ClockTime> {
        // The deadline of the next turn is its start plus the latency (one turn, the `latency`
        // property and upstream's): the base class adds the latency.
        lock(&self.state)
            .aligner
            .as_ref()
            .map(|aligner| gst::ClockTime::from_nseconds(aligner.window().0))
    }

    fn clip(
        &self,
        aggregator_pad: &gst_base::AggregatorPad,
        buffer: gst::Buffer,
    ) -> Option<gst::Buffer> {
        let name = aggregator_pad.name();
        if kind_of(&name) != Some(Kind::Audio) || buffer.flags().contains(gst::BufferFlags::GAP) {
            return Some(buffer);
        }
        // Called from pop_buffer/peek_buffer with the state locked: read the pad, not the state.
        let (bpf, rate) = aggregator_pad
            .downcast_ref::<super::MicroturnPad>()
            .map_or((0, 0), |pad| {
                (pad.imp().audio_bytes_per_sample(), pad.imp().audio_rate())
            });
        if bpf == 0 || rate == 0 {
            return Some(buffer);
        }
        let segment = aggregator_pad.segment();
        gst_audio::audio_buffer_clip(buffer, &segment, rate, bpf)
    }

    fn sink_event(&self, aggregator_pad: &gst_base::AggregatorPad, event: gst::Event) -> bool {
        let name = aggregator_pad.name();
        match event.view() {
            gst::EventView::Caps(caps_event) => {
                let caps = caps_event.caps_owned();
                let settings = *lock(&self.settings);
                let format = match kind_of(&name) {
                    Some(Kind::Audio) => {
                        let info = gst_audio::AudioInfo::from_caps(&caps).ok();
                        let format = info.as_ref().and_then(|info| {
                            let ok = info.channels() == 1
                                && info.rate() == settings.audio_rate
                                && info.layout() == gst_audio::AudioLayout::Interleaved;
                            match info.format() {
                                gst_audio::AudioFormat::F32le if ok => Some(InputFormat::AudioF32),
                                gst_audio::AudioFormat::S16le if ok => Some(InputFormat::AudioS16),
                                _ => None,
                            }
                        });
                        if format.is_none() {
                            gst::element_imp_error!(
                                self,
                                gst::CoreError::Negotiation,
                                [
                                    "pad {} got {}; it takes F32LE or S16LE, mono, at {} Hz (the audio-rate property): put `audioconvert ! audioresample` before microturnmux",
                                    name,
                                    caps,
                                    settings.audio_rate
                                ]
                            );
                            self.forget_format(aggregator_pad);
                            return false;
                        }
                        format
                    }
                    Some(Kind::Video) => match gst_video::VideoInfo::from_caps(&caps) {
                        Ok(info) if info.format() == gst_video::VideoFormat::Rgb => {
                            Some(InputFormat::Video(info))
                        }
                        _ => {
                            gst::element_imp_error!(
                                self,
                                gst::CoreError::Negotiation,
                                [
                                    "pad video got {}; it takes RGB: put `videoconvert ! videoscale` before microturnmux",
                                    caps
                                ]
                            );
                            self.forget_format(aggregator_pad);
                            return false;
                        }
                    },
                    Some(Kind::Text) => {
                        let structure_name = caps.structure(0).map(|s| s.name().to_string());
                        match structure_name.as_deref() {
                            Some("text/x-raw") => Some(InputFormat::TextPlain),
                            Some(packet::RESULT_CAPS_NAME) => Some(InputFormat::TextResult),
                            _ => {
                                gst::element_imp_error!(
                                    self,
                                    gst::CoreError::Negotiation,
                                    [
                                        "pad {} got {}; it takes text/x-raw, format=utf8 or {}",
                                        name,
                                        caps,
                                        packet::RESULT_CAPS_NAME
                                    ]
                                );
                                self.forget_format(aggregator_pad);
                                return false;
                            }
                        }
                    }
                    None => None,
                };
                let mut video_changed = false;
                if let Some(pad) = aggregator_pad.downcast_ref::<super::MicroturnPad>() {
                    let bytes_per_sample = match format {
                        Some(InputFormat::AudioF32) => 4,
                        Some(InputFormat::AudioS16) => 2,
                        _ => 0,
                    };
                    pad.imp()
                        .set_audio_format(bytes_per_sample, settings.audio_rate);
                }
                if let Some(format) = format {
                    let mut state = lock(&self.state);
                    if let InputFormat::Video(info) = &format {
                        video_changed = !matches!(
                            state.formats.get("video"),
                            Some(InputFormat::Video(old))
                                if old.width() == info.width() && old.height() == info.height()
                        );
                    }
                    state.formats.insert(name.to_string(), format);
                }
                if video_changed {
                    // The packet caps carry the frame size: negotiate them again.
                    self.obj().src_pad().mark_reconfigure();
                }
            }
            gst::EventView::Segment(segment_event)
                if segment_event.segment().format() != gst::Format::Time =>
            {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "microturnmux takes TIME segments only (pad {} got {:?})",
                        name,
                        segment_event.segment().format()
                    )
                );
                return false;
            }
            _ => {}
        }
        self.parent_sink_event(aggregator_pad, event)
    }

    fn sink_query(
        &self,
        aggregator_pad: &gst_base::AggregatorPad,
        query: &mut gst::QueryRef,
    ) -> bool {
        let name = aggregator_pad.name();
        let kind = kind_of(&name);
        match query.view_mut() {
            gst::QueryViewMut::Caps(caps_query) => {
                let caps = match kind {
                    Some(Kind::Audio) => audio_caps(lock(&self.settings).audio_rate),
                    Some(Kind::Video) => {
                        let template = video_template_caps();
                        let downstream = self.obj().src_pad().peer_query_caps(None);
                        match downstream_video_size(&downstream) {
                            Some((width, height)) => gst_video::VideoCapsBuilder::new()
                                .format(gst_video::VideoFormat::Rgb)
                                .width(width)
                                .height(height)
                                .build(),
                            None => template,
                        }
                    }
                    Some(Kind::Text) => text_template_caps(),
                    None => gst::Caps::new_empty(),
                };
                let caps = match caps_query.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First)
                    }
                    None => caps,
                };
                caps_query.set_result(&caps);
                true
            }
            gst::QueryViewMut::AcceptCaps(accept) => {
                // Accept any caps of the right media type here, so that wrong formats reach
                // sink_event and fail with a message that says what to add.
                let caps = accept.caps();
                let media = caps.structure(0).map(|s| s.name().to_string());
                let ok = match (kind, media.as_deref()) {
                    (Some(Kind::Audio), Some("audio/x-raw")) => true,
                    (Some(Kind::Video), Some("video/x-raw")) => true,
                    (Some(Kind::Text), Some(media)) => {
                        media == "text/x-raw" || media == packet::RESULT_CAPS_NAME
                    }
                    _ => false,
                };
                accept.set_result(ok);
                true
            }
            _ => self.parent_sink_query(aggregator_pad, query),
        }
    }

    fn src_query(&self, query: &mut gst::QueryRef) -> bool {
        let answered = self.parent_src_query(query);
        if answered && let gst::QueryView::Latency(latency) = query.view() {
            let live = latency.result().0;
            self.live.store(live, std::sync::atomic::Ordering::Relaxed);
            for entry in lock(&self.pads).list.iter() {
                entry.pad.imp().set_live(live);
            }
        }
        if answered
            && let gst::QueryView::Latency(latency) = query.view()
            && !latency.result().0
        {
            let loopback = lock(&self.pads)
                .list
                .iter()
                .any(|entry| entry.pad.imp().is_loopback());
            if loopback {
                // The base class waits for data on every pad when nothing upstream is live.
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Negotiation,
                    ("microturnmux has a loop-back pad in a non-live pipeline: the first turn \
                         waits for data on it; loop back a live source (the reasoning sidecar is one)")
                );
            }
        }
        answered
    }

    fn update_src_caps(&self, downstream: &gst::Caps) -> Result<gst::Caps, gst::FlowError> {
        let settings = *lock(&self.settings);
        let negotiated_video = match lock(&self.state).formats.get("video") {
            Some(InputFormat::Video(info)) => Some((info.width() as i32, info.height() as i32)),
            _ => None,
        };
        let (width, height) = negotiated_video
            .or_else(|| downstream_video_size(downstream))
            .unwrap_or((0, 0));
        let caps = gst::Caps::builder(packet::CAPS_NAME)
            .field(packet::FIELD_VERSION, i32::from(packet::FORMAT_VERSION))
            .field(packet::FIELD_TURN_DURATION, settings.turn_duration)
            .field(packet::FIELD_AUDIO_RATE, settings.audio_rate as i32)
            .field(packet::FIELD_AUDIO_CHANNELS, 1i32)
            .field(packet::FIELD_VIDEO_WIDTH, width)
            .field(packet::FIELD_VIDEO_HEIGHT, height)
            .build();
        if !caps.can_intersect(downstream) {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                [
                    "downstream accepts {} but the aligner makes {}",
                    downstream,
                    caps
                ]
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        Ok(caps)
    }

    fn aggregate(&self, timeout: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        loop {
            match self.step(timeout)? {
                Step::Push { buffer, timed_out } => {
                    gst::trace!(CAT, imp = self, "pushing turn {}", buffer.offset());
                    self.obj().finish_buffer(buffer)?;
                    if timed_out || timeout {
                        // One turn per deadline; the base class calls again at once when the
                        // next deadline has passed too.
                        return Ok(gst::FlowSuccess::Ok);
                    }
                }
                Step::NeedData => return Err(gst_base::AGGREGATOR_FLOW_NEED_DATA),
                Step::Eos => return Err(gst::FlowError::Eos),
            }
        }
    }
}

impl ChildProxyImpl for MicroturnMux {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj()
            .sink_pads()
            .into_iter()
            .nth(index as usize)
            .map(|pad| pad.upcast())
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        self.obj().static_pad(name).map(|pad| pad.upcast())
    }

    fn children_count(&self) -> u32 {
        self.obj().num_sink_pads() as u32
    }
}
