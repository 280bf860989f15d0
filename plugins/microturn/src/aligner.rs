//! The aligner's logic, without GStreamer: per-input accumulators and the turn writer.
//!
//! Everything is in running time (ns) and absolute sample indices: sample `n` of a track sits
//! at running time `n / rate`, and turn `k` covers samples `[k·spt, (k+1)·spt)` with
//! `spt = rate × turn duration`. Turn boundaries are therefore exact multiples of the turn
//! duration and cannot drift, whatever the input buffer sizes.
//!
//! The element (`microturnmux/imp.rs`) maps buffers and feeds these structs; tests and the
//! benchmark drive them directly.

use std::collections::VecDeque;

use interaction_protocol::packet::{
    Header, NO_VIDEO_AGE, PacketError, PacketWriter, audio_flags, packet_flags, text_flags,
    video_flags,
};

const NANOS: u128 = 1_000_000_000;

/// Which frames of a window go into the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoPolicy {
    /// Only the newest frame whose timestamp falls in the window.
    #[default]
    Latest,
    /// Every frame whose timestamp falls in the window.
    All,
}

/// Counters a user can read from the element's `stats` property.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Turns written.
    pub turns: u64,
    /// Turns written at their deadline while some input was missing.
    pub timed_out_turns: u64,
    /// Audio samples that arrived after their turn was pushed and were dropped.
    pub late_samples: u64,
    /// Silence samples put in for missing audio.
    pub gap_samples: u64,
    /// Video frames that arrived after their turn was pushed and were dropped.
    pub late_frames: u64,
    /// Text items carried one turn later than their timestamp.
    pub late_text: u64,
    /// Audio timestamps that jumped further ahead than [`MAX_HOLE`]; taken as broken and
    /// ignored (the audio was placed right after the previous samples).
    pub ignored_jumps: u64,
}

/// The longest timestamp hole, in ns, that the aligner fills with silence (one minute). A
/// jump further ahead is taken as a broken timestamp: filling it would hold that much silence
/// in memory at once.
pub const MAX_HOLE: u64 = 60_000_000_000;

/// The index of the sample at `running_time`, rounded to the nearest sample (upstream
/// elements compute audio timestamps from sample counts, with rounding).
pub fn sample_at(running_time: u64, rate: u32) -> u64 {
    ((u128::from(running_time) * u128::from(rate) + NANOS / 2) / NANOS) as u64
}

/// Samples per turn, or `None` when the turn duration is not a whole number of samples.
pub fn samples_per_turn(turn_duration: u64, rate: u32) -> Option<u64> {
    let product = u128::from(turn_duration) * u128::from(rate);
    (product % NANOS == 0 && product > 0).then_some((product / NANOS) as u64)
}

/// One mono audio track: samples waiting to be cut into turns, with gap bookkeeping.
#[derive(Debug)]
pub struct AudioAccumulator {
    name: String,
    rate: u32,
    samples_per_turn: u64,
    /// Samples equal or closer than this to the expected position are taken as contiguous.
    alignment_threshold: u64,
    /// Absolute index of `pending[0]`: the first sample of the next turn to write.
    turn_start: u64,
    pending: Vec<f32>,
    /// Where the next contiguous sample goes; `None` before the first buffer.
    next: Option<u64>,
    /// Silence put in for timestamp gaps and gap events: absolute `[start, end)` ranges.
    gaps: Vec<(u64, u64)>,
    /// Positions where the input was re-synced.
    disconts: Vec<u64>,
    eos: bool,
}

impl AudioAccumulator {
    /// A track named after its pad whose next turn starts at absolute sample `turn_start`.
    pub fn new(
        name: &str,
        rate: u32,
        samples_per_turn: u64,
        alignment_threshold: u64,
        turn_start: u64,
    ) -> Self {
        // Room for a turn plus a generous input buffer: no reallocation in steady state.
        let pending = Vec::with_capacity(samples_per_turn as usize * 2 + rate as usize);
        Self {
            name: name.to_owned(),
            rate,
            samples_per_turn,
            alignment_threshold: sample_at(alignment_threshold, rate),
            turn_start,
            pending,
            next: None,
            gaps: Vec::with_capacity(8),
            disconts: Vec::with_capacity(8),
            eos: false,
        }
    }

    /// The pad name this track is carried under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Absolute index one past the last sample held.
    pub fn filled_until(&self) -> u64 {
        self.turn_start + self.pending.len() as u64
    }

    /// Whether every sample of the turn starting at `self.turn_start` is here.
    pub fn turn_complete(&self) -> bool {
        self.filled_until() >= self.turn_start + self.samples_per_turn
    }

    /// How many more samples the next turn needs.
    pub fn samples_needed(&self) -> u64 {
        (self.turn_start + self.samples_per_turn).saturating_sub(self.filled_until())
    }

    /// Whether any sample at or after the next turn's start is held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Marks the end of the stream (the rest of the last turn becomes silence, flagged).
    pub fn set_eos(&mut self, eos: bool) {
        self.eos = eos;
    }

    /// Whether the stream ended.
    pub fn is_eos(&self) -> bool {
        self.eos
    }

    /// Where a buffer starting at `running_time` goes: contiguous with the previous buffer
    /// unless it is flagged discont or its timestamp is further than the alignment threshold.
    fn place(&mut self, running_time: Option<u64>, discont: bool, stats: &mut Stats) -> u64 {
        let stamped = running_time.map(|rt| sample_at(rt, self.rate));
        let end = self.filled_until();
        if let Some(at) = stamped
            && at > end
            && at - end > sample_at(MAX_HOLE, self.rate)
        {
            stats.ignored_jumps += 1;
            return self.next.unwrap_or(end).max(self.turn_start);
        }
        match (self.next, stamped) {
            (Some(next), Some(at)) if !discont && at.abs_diff(next) <= self.alignment_threshold => {
                next
            }
            (Some(next), None) => next,
            (None, None) => self.filled_until(),
            (previous, Some(at)) => {
                if previous.is_some() {
                    self.disconts.push(at);
                }
                at
            }
        }
    }

    /// Makes room so that the next sample written lands at absolute index `at`: silence for a
    /// hole (flagged as a gap), truncation for an overlap. Returns how many of the `count`
    /// input samples must be dropped because they belong to turns already written.
    fn seek_to(&mut self, at: u64, count: u64, stats: &mut Stats) -> u64 {
        let end = self.filled_until();
        if at > end {
            self.pending
                .resize(self.pending.len() + (at - end) as usize, 0.0);
            self.add_gap(end, at);
            0
        } else if at >= self.turn_start {
            if at < end {
                // Timestamps went back: the newer data replaces what was there.
                self.pending.truncate((at - self.turn_start) as usize);
                self.gaps.retain_mut(|gap| {
                    gap.1 = gap.1.min(at);
                    gap.0 < gap.1
                });
            }
            0
        } else if at + count <= self.turn_start {
            stats.late_samples += count;
            count
        } else {
            // Starts in a turn already written and reaches into the next one: drop the late
            // head; the rest replaces whatever was held from the turn start on.
            let late = self.turn_start - at;
            stats.late_samples += late;
            self.pending.clear();
            self.gaps.clear();
            late
        }
    }

    fn add_gap(&mut self, start: u64, end: u64) {
        if let Some(last) = self.gaps.last_mut()
            && last.1 == start
        {
            last.1 = end;
            return;
        }
        self.gaps.push((start, end));
    }

    /// Adds samples whose first one is at `running_time` (`None`: right after the previous).
    /// Returns the absolute index where the first sample landed.
    pub fn push(
        &mut self,
        running_time: Option<u64>,
        discont: bool,
        samples: impl ExactSizeIterator<Item = f32>,
        stats: &mut Stats,
    ) -> u64 {
        let count = samples.len() as u64;
        let at = self.place(running_time, discont, stats);
        let skip = self.seek_to(at, count, stats);
        // Even when everything was late, `next` follows the input, so that contiguous data
        // after a stall lands at the right sample.
        self.next = Some(at + count);
        self.eos = false;
        if skip < count {
            self.pending.extend(samples.skip(skip as usize));
        }
        at
    }

    /// Adds `count` samples of silence flagged as a gap (a gap event or a GAP buffer).
    pub fn push_gap(
        &mut self,
        running_time: Option<u64>,
        discont: bool,
        count: u64,
        stats: &mut Stats,
    ) {
        let at = self.place(running_time, discont, stats);
        let skip = self.seek_to(at, count, stats);
        let start = at + skip;
        let end = at + count;
        if end > start {
            self.pending
                .resize(self.pending.len() + (end - start) as usize, 0.0);
            self.add_gap(start, end);
        }
        self.next = Some(end);
    }

    /// Writes the turn starting at `self.turn_start` and moves on to the next one.
    fn write_turn(
        &mut self,
        writer: &mut PacketWriter<'_>,
        stats: &mut Stats,
    ) -> Result<(), PacketError> {
        let start = self.turn_start;
        let end = start + self.samples_per_turn;
        let spt = self.samples_per_turn as usize;
        let held = self.pending.len().min(spt);
        let mut gap = (spt - held) as u64;
        if held < spt {
            self.pending.resize(spt, 0.0);
        }
        for &(gap_start, gap_end) in &self.gaps {
            let (a, b) = (gap_start.max(start), gap_end.min(end));
            if b > a {
                gap += b - a;
            }
        }
        let mut flags = 0;
        if gap > 0 {
            flags |= audio_flags::GAP;
        }
        if self.eos && self.next.is_none_or(|next| next < end) {
            flags |= audio_flags::PARTIAL;
        }
        if self.disconts.iter().any(|&at| at >= start && at < end) {
            flags |= audio_flags::DISCONT;
        }
        stats.gap_samples += gap;
        writer.audio_track(&self.name, flags, gap as u32, &self.pending[..spt])?;
        self.pending.drain(..spt);
        self.gaps.retain_mut(|range| {
            range.0 = range.0.max(end);
            range.0 < range.1
        });
        self.disconts.retain(|&at| at >= end);
        self.turn_start = end;
        Ok(())
    }
}

/// Frame data the video accumulator can hold: anything that derefs to tightly packed RGB8.
pub trait FrameData: AsRef<[u8]> + Send {}
impl<T: AsRef<[u8]> + Send> FrameData for T {}

#[derive(Debug)]
struct PendingFrame<D> {
    running_time: u64,
    width: u32,
    height: u32,
    data: D,
}

/// The video input: frames waiting for their turn.
#[derive(Debug)]
pub struct VideoAccumulator<D> {
    policy: VideoPolicy,
    turn_duration: u64,
    /// Frames not yet written, in timestamp order, none before the next window.
    frames: VecDeque<PendingFrame<D>>,
    /// The newest frame timestamp in a window already written (or dropped as late).
    newest_written: Option<u64>,
    eos: bool,
}

impl<D: FrameData> VideoAccumulator<D> {
    /// An empty video input.
    pub fn new(policy: VideoPolicy, turn_duration: u64) -> Self {
        Self {
            policy,
            turn_duration,
            frames: VecDeque::with_capacity(8),
            newest_written: None,
            eos: false,
        }
    }

    /// Sets which frames of a window are kept.
    pub fn set_policy(&mut self, policy: VideoPolicy) {
        self.policy = policy;
    }

    /// Adds a frame at `running_time`; `window_start` is the start of the next turn to write.
    /// A frame for a window already written is dropped (and counted).
    pub fn push(
        &mut self,
        running_time: u64,
        width: u32,
        height: u32,
        data: D,
        window_start: u64,
        stats: &mut Stats,
    ) {
        if running_time < window_start {
            stats.late_frames += 1;
            self.newest_written = Some(self.newest_written.unwrap_or(0).max(running_time));
            return;
        }
        if self.policy == VideoPolicy::Latest
            && let Some(last) = self.frames.back()
            && (last.running_time - window_start) / self.turn_duration
                == (running_time - window_start) / self.turn_duration
            && last.running_time <= running_time
        {
            // Only the newest frame of a window is written: do not pile up older ones.
            self.frames.pop_back();
        }
        self.frames.push_back(PendingFrame {
            running_time,
            width,
            height,
            data,
        });
    }

    /// Marks the end of the video stream.
    pub fn set_eos(&mut self, eos: bool) {
        self.eos = eos;
    }

    /// Whether frames wait.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn in_window(&self, window_end: u64) -> usize {
        self.frames
            .iter()
            .take_while(|frame| frame.running_time < window_end)
            .count()
    }

    /// Video flags and the age of the newest frame at the window end.
    fn header_fields(&self, window_end: u64) -> (u32, u64) {
        let in_window = self.in_window(window_end);
        let newest = match in_window {
            0 => self.newest_written,
            n => self.frames.get(n - 1).map(|frame| frame.running_time),
        };
        let mut flags = video_flags::PRESENT;
        if in_window == 0 {
            flags |= video_flags::STALE;
        }
        let age = newest.map_or(NO_VIDEO_AGE, |t| window_end.saturating_sub(t));
        (flags, age)
    }

    fn write_turn(
        &mut self,
        window_end: u64,
        writer: &mut PacketWriter<'_>,
    ) -> Result<(), PacketError> {
        let in_window = self.in_window(window_end);
        let first = match self.policy {
            VideoPolicy::Latest => in_window.saturating_sub(1),
            VideoPolicy::All => 0,
        };
        for frame in self.frames.range(first..in_window) {
            writer.video_frame(
                frame.running_time,
                frame.width,
                frame.height,
                0,
                frame.data.as_ref(),
            )?;
        }
        if in_window > 0 {
            self.newest_written = self.frames.get(in_window - 1).map(|f| f.running_time);
        }
        self.frames.drain(..in_window);
        Ok(())
    }
}

#[derive(Debug)]
struct PendingText {
    running_time: u64,
    text: String,
    fields: Vec<(String, String)>,
}

/// One text input.
#[derive(Debug)]
pub struct TextAccumulator {
    name: String,
    loopback: bool,
    items: VecDeque<PendingText>,
    eos: bool,
}

impl TextAccumulator {
    /// A text input named after its pad.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            loopback: false,
            items: VecDeque::new(),
            eos: false,
        }
    }

    /// The pad name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the input as a loop-back input (its items carry the LOOPBACK flag).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    pub fn set_loopback(&mut self, loopback: bool) {
        self.loopback = loopback;
    }

    /// Marks the end of the text stream.
    pub fn set_eos(&mut self, eos: bool) {
        self.eos = eos;
    }

    /// Whether no item waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an item stamped `running_time`.
    pub fn push(&mut self, running_time: u64, text: String, fields: Vec<(String, String)>) {
        self.items.push_back(PendingText {
            running_time,
            text,
            fields,
        });
    }

    fn write_turn(
        &mut self,
        window_start: u64,
        window_end: u64,
        writer: &mut PacketWriter<'_>,
        stats: &mut Stats,
    ) -> Result<(), PacketError> {
        while let Some(item) = self.items.front() {
            if item.running_time >= window_end {
                break;
            }
            let mut flags = 0;
            if item.running_time < window_start {
                flags |= text_flags::LATE;
                stats.late_text += 1;
            }
            if self.loopback {
                flags |= text_flags::LOOPBACK;
            }
            let offset = item.running_time as i64 - window_start as i64;
            writer.text_item(
                &self.name,
                flags,
                offset,
                &item.text,
                item.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
            self.items.pop_front();
        }
        Ok(())
    }
}

/// The aligner: all inputs, the turn counter and the packet scratch buffer.
#[derive(Debug)]
pub struct Aligner<D> {
    turn_duration: u64,
    rate: u32,
    samples_per_turn: u64,
    alignment_threshold: u64,
    next_turn: u64,
    /// Running time of turn 0's start (t0); `None` until known.
    origin: Option<u64>,
    discont: bool,
    /// Audio tracks, in pad creation order.
    pub audio: Vec<AudioAccumulator>,
    /// The video input, if there is a video pad.
    pub video: Option<VideoAccumulator<D>>,
    /// Text inputs, in pad creation order.
    pub text: Vec<TextAccumulator>,
    /// Counters.
    pub stats: Stats,
    scratch: Vec<u8>,
}

impl<D: FrameData> Aligner<D> {
    /// A new aligner. Fails when the turn duration is not a whole number of samples.
    pub fn new(turn_duration: u64, rate: u32, alignment_threshold: u64) -> Result<Self, String> {
        let samples_per_turn = samples_per_turn(turn_duration, rate).ok_or_else(|| {
            format!(
                "turn-duration {turn_duration} ns is not a whole number of samples at {rate} Hz"
            )
        })?;
        Ok(Self {
            turn_duration,
            rate,
            samples_per_turn,
            alignment_threshold,
            next_turn: 0,
            origin: Some(0),
            discont: true,
            audio: Vec::new(),
            video: None,
            text: Vec::new(),
            stats: Stats::default(),
            scratch: Vec::with_capacity(64 * 1024),
        })
    }

    /// Turn duration in ns.
    pub fn turn_duration(&self) -> u64 {
        self.turn_duration
    }

    /// Audio sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples per turn and track.
    pub fn samples_per_turn(&self) -> u64 {
        self.samples_per_turn
    }

    /// Index of the next turn to write.
    pub fn next_turn(&self) -> u64 {
        self.next_turn
    }

    /// `[start, end)` of the next turn's window, running time in ns.
    ///
    /// Before the origin is known this is the window of an origin at 0.
    pub fn window(&self) -> (u64, u64) {
        let start = self.origin.unwrap_or(0) + self.next_turn * self.turn_duration;
        (start, start + self.turn_duration)
    }

    /// Running time of turn 0's start, if known.
    pub fn origin(&self) -> Option<u64> {
        self.origin
    }

    /// Leaves the origin unknown until [`Aligner::set_origin`] (start-time-selection=first).
    pub fn clear_origin(&mut self) {
        self.origin = None;
    }

    /// Sets the running time of turn 0's start (t0) and starts over at turn 0.
    pub fn set_origin(&mut self, origin: u64) {
        self.origin = Some(origin);
        self.next_turn = 0;
        let first_sample = sample_at(origin, self.rate);
        for track in &mut self.audio {
            *track = AudioAccumulator::new(
                &track.name,
                self.rate,
                self.samples_per_turn,
                self.alignment_threshold,
                first_sample,
            );
        }
    }

    fn turn_start_sample(&self) -> u64 {
        sample_at(self.origin.unwrap_or(0), self.rate) + self.next_turn * self.samples_per_turn
    }

    /// Adds an audio track for pad `name`.
    pub fn add_audio(&mut self, name: &str) {
        self.audio.push(AudioAccumulator::new(
            name,
            self.rate,
            self.samples_per_turn,
            self.alignment_threshold,
            self.turn_start_sample(),
        ));
    }

    /// The audio track of pad `name`.
    pub fn audio_mut(&mut self, name: &str) -> Option<&mut AudioAccumulator> {
        self.audio.iter_mut().find(|track| track.name == name)
    }

    /// Adds a text input for pad `name`.
    pub fn add_text(&mut self, name: &str) {
        self.text.push(TextAccumulator::new(name));
    }

    /// The text input of pad `name`.
    pub fn text_mut(&mut self, name: &str) -> Option<&mut TextAccumulator> {
        self.text.iter_mut().find(|track| track.name == name)
    }

    /// Removes the input of pad `name`, whatever its kind.
    pub fn remove(&mut self, name: &str) {
        self.audio.retain(|track| track.name != name);
        self.text.retain(|track| track.name != name);
        if name == "video" {
            self.video = None;
        }
    }

    /// Whether some input holds data for the next turn or later (used at EOS).
    pub fn has_pending(&self) -> bool {
        self.audio.iter().any(AudioAccumulator::has_pending)
            || self.video.as_ref().is_some_and(|video| !video.is_empty())
            || self.text.iter().any(|text| !text.is_empty())
    }

    /// As [`Aligner::has_pending`], without the loop-back text tracks: what the inputs still
    /// hold once they have all ended. Loop-back text (a sidecar still streaming an answer)
    /// never holds back the end of the stream.
    pub fn has_pending_input(&self) -> bool {
        self.audio.iter().any(AudioAccumulator::has_pending)
            || self.video.as_ref().is_some_and(|video| !video.is_empty())
            || self
                .text
                .iter()
                .any(|text| !text.is_loopback() && !text.is_empty())
    }

    /// Writes the next turn into the scratch buffer and returns it. `timed_out` marks a turn
    /// pushed at its deadline with some input missing.
    pub fn write_turn(&mut self, timed_out: bool) -> Result<&[u8], PacketError> {
        let (start, end) = self.window();
        let mut flags = 0;
        if self.discont {
            flags |= packet_flags::DISCONT;
        }
        if timed_out {
            flags |= packet_flags::TIMED_OUT;
            self.stats.timed_out_turns += 1;
        }
        let (video_flags, video_age) = self
            .video
            .as_ref()
            .map_or((0, NO_VIDEO_AGE), |video| video.header_fields(end));
        let header = Header {
            turn_index: self.next_turn,
            start,
            duration: self.turn_duration,
            audio_rate: self.rate,
            flags,
            video_flags,
            video_age,
            samples_per_track: self.samples_per_turn as u32,
        };
        self.scratch.clear();
        let mut writer = PacketWriter::begin(&mut self.scratch, &header);
        for track in &mut self.audio {
            track.write_turn(&mut writer, &mut self.stats)?;
        }
        if let Some(video) = &mut self.video {
            video.write_turn(end, &mut writer)?;
        }
        for text in &mut self.text {
            text.write_turn(start, end, &mut writer, &mut self.stats)?;
        }
        writer.finish();
        self.next_turn += 1;
        self.discont = false;
        self.stats.turns += 1;
        Ok(&self.scratch)
    }
}
