//! The micro-turn packet: what `microturnmux` emits, once per micro-turn.
//!
//! # Caps
//!
//! ```text
//! application/x-microturn, version=(int)1, turn-duration=(guint64)200000000,
//!     audio-rate=(int)16000, audio-channels=(int)1, video-width=(int)0, video-height=(int)0
//! ```
//!
//! `turn-duration` is in nanoseconds. `video-width` and `video-height` are 0 when no video pad
//! is linked; a downstream element may fix them in its sink caps to ask the aligner's video pad
//! for that frame size. The constants below name every field.
//!
//! # Buffers
//!
//! One buffer per micro-turn. Its PTS is the window start in running time of the output
//! segment, its duration the turn duration. The payload is one packet in the layout below.
//!
//! # Layout, format version 1
//!
//! Every integer and float is little-endian. Strings are UTF-8 with a length prefix and no
//! terminator. Nothing is padded or aligned.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MTRN` |
//! | 4 | 2 | format version (`1`) |
//! | 6 | 2 | header length in bytes (`64` in version 1; the body starts there) |
//! | 8 | 8 | turn index *k* (u64) |
//! | 16 | 8 | window start, running time in ns (u64) |
//! | 24 | 8 | turn duration in ns (u64) |
//! | 32 | 4 | audio sample rate in Hz (u32) |
//! | 36 | 4 | packet flags (u32, [`packet_flags`]) |
//! | 40 | 2 | number of audio tracks (u16) |
//! | 42 | 2 | number of video frames (u16) |
//! | 44 | 4 | number of text items (u32) |
//! | 48 | 4 | video flags (u32, [`video_flags`]) |
//! | 52 | 8 | age of the newest video frame seen so far at the window end, ns (u64; `u64::MAX`: none yet) |
//! | 60 | 4 | samples per track, = rate × duration (u32) |
//!
//! Then, in this order:
//!
//! - each **audio track**: name length (u16), name (the sink pad's name: `audio`, `audio_0`, …),
//!   flags (u32, [`audio_flags`]), number of samples filled with silence (u32), then exactly
//!   *samples per track* samples, F32 mono;
//! - each **video frame**: timestamp in running time ns (u64), width (u32), height (u32),
//!   flags (u32, reserved, 0), data length (u32, = width × height × 3), RGB8 rows without padding;
//! - each **text item**: source pad name length (u16), name, flags (u32, [`text_flags`]), offset
//!   of the item's timestamp from the window start in ns (i64; negative for a late item), text
//!   length (u32), text, number of fields (u16), then per field: key length (u16), key, value
//!   length (u32), value.
//!
//! The packet ends exactly after the last item: trailing bytes are an error.
//!
//! # Structured text
//!
//! A text pad accepts `text/x-raw, format=utf8` (the buffer is the text) and
//! [`RESULT_CAPS_NAME`] (a JSON object: the member [`RESULT_TEXT_KEY`] is the text, every other
//! member becomes a field, strings as they are and other values as their JSON text). The
//! reasoning sidecar's results (request id, partial or final) travel this way.

use std::fmt;

/// Caps name of the micro-turn stream.
pub const CAPS_NAME: &str = "application/x-microturn";
/// The format version this module writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Caps field: format version (int).
pub const FIELD_VERSION: &str = "version";
/// Caps field: turn duration in nanoseconds (guint64).
pub const FIELD_TURN_DURATION: &str = "turn-duration";
/// Caps field: audio sample rate (int).
pub const FIELD_AUDIO_RATE: &str = "audio-rate";
/// Caps field: audio channels per track (int, always 1 in version 1).
pub const FIELD_AUDIO_CHANNELS: &str = "audio-channels";
/// Caps field: video frame width (int, 0 without video).
pub const FIELD_VIDEO_WIDTH: &str = "video-width";
/// Caps field: video frame height (int, 0 without video).
pub const FIELD_VIDEO_HEIGHT: &str = "video-height";

/// Caps name of structured text results (JSON object) on an aligner text pad.
pub const RESULT_CAPS_NAME: &str = "application/x-interaction-result";
/// The JSON member of a structured result that holds the text itself.
pub const RESULT_TEXT_KEY: &str = "text";

/// The packet's magic bytes.
pub const MAGIC: [u8; 4] = *b"MTRN";
/// Header length of format version 1.
pub const HEADER_LEN: usize = 64;
/// Value of the video age field when no frame has been seen yet.
pub const NO_VIDEO_AGE: u64 = u64::MAX;

/// Packet-level flags.
pub mod packet_flags {
    /// The first packet after a start, a flush or a segment change.
    pub const DISCONT: u32 = 1;
    /// The last packet before end of stream.
    pub const LAST: u32 = 2;
    /// Pushed at its deadline in live mode although some input had not arrived.
    pub const TIMED_OUT: u32 = 4;
}

/// Per-track audio flags.
pub mod audio_flags {
    /// Some samples of this turn are silence put in for missing audio (a stall, a timestamp
    /// gap, a gap event, or no audio yet). The count is in the track's gap field.
    pub const GAP: u32 = 1;
    /// The track's stream ended inside (or before) this turn; the rest is silence.
    pub const PARTIAL: u32 = 2;
    /// The input had a discontinuity inside this turn (timestamps jumped; the aligner re-synced).
    pub const DISCONT: u32 = 4;
}

/// Video flags.
pub mod video_flags {
    /// The aligner has a video pad.
    pub const PRESENT: u32 = 1;
    /// No frame's timestamp fell in this window (the camera stalled or runs slower than the turns).
    pub const STALE: u32 = 2;
}

/// Per-item text flags.
pub mod text_flags {
    /// The item arrived after the turn its timestamp belongs to had been pushed; it is carried
    /// in the next turn and its offset is negative.
    pub const LATE: u32 = 1;
    /// The item came in on a loop-back pad (for example the reasoning sidecar's results).
    pub const LOOPBACK: u32 = 2;
}

/// Why a buffer is not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// The buffer ends before a field that must be there.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset of that field.
        offset: usize,
    },
    /// The first four bytes are not `MTRN`.
    BadMagic,
    /// A format version this build cannot read.
    UnsupportedVersion(u16),
    /// A field holds a value the format forbids.
    Invalid(&'static str),
    /// A string is not valid UTF-8.
    NotUtf8(&'static str),
    /// Bytes follow the last item.
    TrailingBytes(usize),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, offset } => {
                write!(f, "micro-turn packet truncated: {what} at byte {offset}")
            }
            Self::BadMagic => write!(f, "not a micro-turn packet (bad magic)"),
            Self::UnsupportedVersion(version) => write!(
                f,
                "micro-turn packet format version {version} is not supported (this build reads {FORMAT_VERSION})"
            ),
            Self::Invalid(what) => write!(f, "invalid micro-turn packet: {what}"),
            Self::NotUtf8(what) => write!(f, "invalid micro-turn packet: {what} is not UTF-8"),
            Self::TrailingBytes(count) => {
                write!(f, "micro-turn packet has {count} trailing bytes")
            }
        }
    }
}

impl std::error::Error for PacketError {}

/// The fixed part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Turn index *k*.
    pub turn_index: u64,
    /// Window start, running time in ns.
    pub start: u64,
    /// Turn duration in ns.
    pub duration: u64,
    /// Audio sample rate in Hz.
    pub audio_rate: u32,
    /// [`packet_flags`].
    pub flags: u32,
    /// [`video_flags`].
    pub video_flags: u32,
    /// Age in ns of the newest frame seen so far, at the window end ([`NO_VIDEO_AGE`]: none).
    pub video_age: u64,
    /// Samples in every audio track (= rate × duration).
    pub samples_per_track: u32,
}

/// One participant's audio for one turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioTrack {
    /// The aligner's sink pad name (`audio`, `audio_0`, …).
    pub name: String,
    /// [`audio_flags`].
    pub flags: u32,
    /// How many samples are silence put in for missing audio.
    pub gap_samples: u32,
    /// Exactly `samples_per_track` F32 samples.
    pub samples: Vec<f32>,
}

/// One RGB8 frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VideoFrame {
    /// Running time of the frame in ns.
    pub timestamp: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Reserved, 0.
    pub flags: u32,
    /// `width * height * 3` bytes, RGB, rows without padding.
    pub data: Vec<u8>,
}

/// One text item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextItem {
    /// The aligner's sink pad it came from (`text_0`, …).
    pub pad: String,
    /// [`text_flags`].
    pub flags: u32,
    /// Offset of the item's timestamp from the window start, ns (negative when late).
    pub offset: i64,
    /// The text.
    pub text: String,
    /// Structured fields (for example `request_id`, `final`).
    pub fields: Vec<(String, String)>,
}

/// A parsed packet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Packet {
    /// The fixed part.
    pub header: Header,
    /// One per audio pad, in pad order.
    pub audio: Vec<AudioTrack>,
    /// Frames whose timestamps fall in the window.
    pub video: Vec<VideoFrame>,
    /// Text items, in arrival order per pad.
    pub text: Vec<TextItem>,
}

impl Packet {
    /// Parses one packet. Never panics: a truncated, corrupt or wrong-version buffer is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, PacketError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4, "magic")? != MAGIC {
            return Err(PacketError::BadMagic);
        }
        let version = reader.u16("format version")?;
        if version != FORMAT_VERSION {
            return Err(PacketError::UnsupportedVersion(version));
        }
        let header_len = usize::from(reader.u16("header length")?);
        if header_len != HEADER_LEN {
            return Err(PacketError::Invalid("header length"));
        }
        let turn_index = reader.u64("turn index")?;
        let start = reader.u64("window start")?;
        let duration = reader.u64("turn duration")?;
        let audio_rate = reader.u32("audio rate")?;
        let flags = reader.u32("packet flags")?;
        let audio_count = reader.u16("audio track count")?;
        let video_count = reader.u16("video frame count")?;
        let text_count = reader.u32("text item count")?;
        let video_flags = reader.u32("video flags")?;
        let video_age = reader.u64("video age")?;
        let samples_per_track = reader.u32("samples per track")?;
        if duration == 0 {
            return Err(PacketError::Invalid("turn duration is zero"));
        }
        let samples = usize::try_from(samples_per_track)
            .map_err(|_| PacketError::Invalid("samples per track"))?;
        let header = Header {
            turn_index,
            start,
            duration,
            audio_rate,
            flags,
            video_flags,
            video_age,
            samples_per_track,
        };

        // Counts come from the buffer: bound every allocation by what the buffer can hold.
        let mut audio = Vec::with_capacity(usize::from(audio_count).min(reader.remaining() / 10));
        for _ in 0..audio_count {
            let name = reader.string16("audio track name")?;
            let flags = reader.u32("audio flags")?;
            let gap_samples = reader.u32("audio gap count")?;
            if gap_samples > samples_per_track {
                return Err(PacketError::Invalid("gap count exceeds the track length"));
            }
            let byte_len = samples
                .checked_mul(4)
                .ok_or(PacketError::Invalid("samples per track"))?;
            let raw = reader.take(byte_len, "audio samples")?;
            let samples = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            audio.push(AudioTrack {
                name,
                flags,
                gap_samples,
                samples,
            });
        }
        let mut video = Vec::with_capacity(usize::from(video_count).min(reader.remaining() / 24));
        for _ in 0..video_count {
            let timestamp = reader.u64("frame timestamp")?;
            let width = reader.u32("frame width")?;
            let height = reader.u32("frame height")?;
            let flags = reader.u32("frame flags")?;
            let len = reader.u32("frame data length")?;
            // Checked: width and height come from the wire and their product can overflow.
            let expected = u64::from(width)
                .checked_mul(u64::from(height))
                .and_then(|pixels| pixels.checked_mul(3));
            if expected != Some(u64::from(len)) {
                return Err(PacketError::Invalid(
                    "frame data length is not width * height * 3",
                ));
            }
            let data = reader.take(len as usize, "frame data")?.to_vec();
            video.push(VideoFrame {
                timestamp,
                width,
                height,
                flags,
                data,
            });
        }
        let text_capacity = usize::try_from(text_count)
            .unwrap_or(usize::MAX)
            .min(reader.remaining() / 20);
        let mut text = Vec::with_capacity(text_capacity);
        for _ in 0..text_count {
            let pad = reader.string16("text pad name")?;
            let flags = reader.u32("text flags")?;
            let offset = reader.i64("text offset")?;
            let body = reader.string32("text")?;
            let field_count = reader.u16("text field count")?;
            let mut fields =
                Vec::with_capacity(usize::from(field_count).min(reader.remaining() / 6));
            for _ in 0..field_count {
                let key = reader.string16("field key")?;
                let value = reader.string32("field value")?;
                fields.push((key, value));
            }
            text.push(TextItem {
                pad,
                flags,
                offset,
                text: body,
                fields,
            });
        }
        if reader.remaining() != 0 {
            return Err(PacketError::TrailingBytes(reader.remaining()));
        }
        Ok(Self {
            header,
            audio,
            video,
            text,
        })
    }

    /// Appends the serialised packet to `out`. Fails only when a count or length does not fit
    /// the format (more than 65535 tracks or frames, a track of the wrong length, …).
    pub fn serialize_into(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        let mut writer = PacketWriter::begin(out, &self.header);
        for track in &self.audio {
            writer.audio_track(&track.name, track.flags, track.gap_samples, &track.samples)?;
        }
        for frame in &self.video {
            writer.video_frame(
                frame.timestamp,
                frame.width,
                frame.height,
                frame.flags,
                &frame.data,
            )?;
        }
        for item in &self.text {
            writer.text_item(
                &item.pad,
                item.flags,
                item.offset,
                &item.text,
                item.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
        }
        writer.finish();
        Ok(())
    }

    /// The serialised packet in a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::new();
        self.serialize_into(&mut out)?;
        Ok(out)
    }
}

/// Writes a packet section by section into a caller's vector, without allocating beyond the
/// vector's growth: the aligner reuses one vector for every turn.
///
/// Sections must come in order: audio tracks, then video frames, then text items.
pub struct PacketWriter<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
    samples_per_track: u32,
    audio_count: u16,
    video_count: u16,
    text_count: u32,
    section: u8,
}

impl<'a> PacketWriter<'a> {
    /// Writes the header (counts are filled in by [`PacketWriter::finish`]).
    pub fn begin(out: &'a mut Vec<u8>, header: &Header) -> Self {
        let base = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        out.extend_from_slice(&header.turn_index.to_le_bytes());
        out.extend_from_slice(&header.start.to_le_bytes());
        out.extend_from_slice(&header.duration.to_le_bytes());
        out.extend_from_slice(&header.audio_rate.to_le_bytes());
        out.extend_from_slice(&header.flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&header.video_flags.to_le_bytes());
        out.extend_from_slice(&header.video_age.to_le_bytes());
        out.extend_from_slice(&header.samples_per_track.to_le_bytes());
        debug_assert_eq!(out.len() - base, HEADER_LEN);
        Self {
            out,
            base,
            samples_per_track: header.samples_per_track,
            audio_count: 0,
            video_count: 0,
            text_count: 0,
            section: 0,
        }
    }

    fn enter(&mut self, section: u8) -> Result<(), PacketError> {
        if section < self.section {
            return Err(PacketError::Invalid(
                "sections out of order (audio, video, text)",
            ));
        }
        self.section = section;
        Ok(())
    }

    /// Appends one audio track of exactly `samples_per_track` samples.
    pub fn audio_track(
        &mut self,
        name: &str,
        flags: u32,
        gap_samples: u32,
        samples: &[f32],
    ) -> Result<(), PacketError> {
        self.enter(0)?;
        if samples.len() != self.samples_per_track as usize {
            return Err(PacketError::Invalid(
                "audio track length differs from samples per track",
            ));
        }
        self.audio_count = self
            .audio_count
            .checked_add(1)
            .ok_or(PacketError::Invalid("too many audio tracks"))?;
        put_str16(self.out, name)?;
        self.out.extend_from_slice(&flags.to_le_bytes());
        self.out
            .extend_from_slice(&gap_samples.min(self.samples_per_track).to_le_bytes());
        self.out.reserve(samples.len() * 4);
        for sample in samples {
            self.out.extend_from_slice(&sample.to_le_bytes());
        }
        Ok(())
    }

    /// Appends one RGB8 frame (`data.len()` must be `width * height * 3`).
    pub fn video_frame(
        &mut self,
        timestamp: u64,
        width: u32,
        height: u32,
        flags: u32,
        data: &[u8],
    ) -> Result<(), PacketError> {
        self.enter(1)?;
        let expected = u64::from(width)
            .checked_mul(u64::from(height))
            .and_then(|pixels| pixels.checked_mul(3));
        if expected != Some(data.len() as u64) {
            return Err(PacketError::Invalid(
                "frame data length is not width * height * 3",
            ));
        }
        let len = u32::try_from(data.len()).map_err(|_| PacketError::Invalid("frame too big"))?;
        self.video_count = self
            .video_count
            .checked_add(1)
            .ok_or(PacketError::Invalid("too many video frames"))?;
        self.out.extend_from_slice(&timestamp.to_le_bytes());
        self.out.extend_from_slice(&width.to_le_bytes());
        self.out.extend_from_slice(&height.to_le_bytes());
        self.out.extend_from_slice(&flags.to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// Appends one text item with its fields.
    pub fn text_item<'f>(
        &mut self,
        pad: &str,
        flags: u32,
        offset: i64,
        text: &str,
        fields: impl IntoIterator<Item = (&'f str, &'f str)>,
    ) -> Result<(), PacketError> {
        self.enter(2)?;
        self.text_count = self
            .text_count
            .checked_add(1)
            .ok_or(PacketError::Invalid("too many text items"))?;
        put_str16(self.out, pad)?;
        self.out.extend_from_slice(&flags.to_le_bytes());
        self.out.extend_from_slice(&offset.to_le_bytes());
        put_str32(self.out, text)?;
        let count_at = self.out.len();
        self.out.extend_from_slice(&0u16.to_le_bytes());
        let mut count: u16 = 0;
        for (key, value) in fields {
            count = count
                .checked_add(1)
                .ok_or(PacketError::Invalid("too many text fields"))?;
            put_str16(self.out, key)?;
            put_str32(self.out, value)?;
        }
        self.out[count_at..count_at + 2].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }

    /// Fills in the counts. The packet is complete after this.
    pub fn finish(self) {
        let base = self.base;
        self.out[base + 40..base + 42].copy_from_slice(&self.audio_count.to_le_bytes());
        self.out[base + 42..base + 44].copy_from_slice(&self.video_count.to_le_bytes());
        self.out[base + 44..base + 48].copy_from_slice(&self.text_count.to_le_bytes());
    }
}

fn put_str16(out: &mut Vec<u8>, text: &str) -> Result<(), PacketError> {
    let len = u16::try_from(text.len()).map_err(|_| PacketError::Invalid("name too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn put_str32(out: &mut Vec<u8>, text: &str) -> Result<(), PacketError> {
    let len = u32::try_from(text.len()).map_err(|_| PacketError::Invalid("text too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], PacketError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(PacketError::Truncated {
                what,
                offset: self.at,
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PacketError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, PacketError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PacketError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, PacketError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, PacketError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn string16(&mut self, what: &'static str) -> Result<String, PacketError> {
        let len = usize::from(self.u16(what)?);
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| PacketError::NotUtf8(what))
    }

    fn string32(&mut self, what: &'static str) -> Result<String, PacketError> {
        let len = self.u32(what)? as usize;
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| PacketError::NotUtf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_packet() -> Packet {
        Packet {
            header: Header {
                turn_index: 7,
                start: 1_400_000_000,
                duration: 200_000_000,
                audio_rate: 20,
                flags: packet_flags::DISCONT,
                video_flags: video_flags::PRESENT,
                video_age: 40_000_000,
                samples_per_track: 4,
            },
            audio: vec![
                AudioTrack {
                    name: "audio".into(),
                    flags: audio_flags::GAP,
                    gap_samples: 2,
                    samples: vec![0.5, -0.25, 0.0, 0.0],
                },
                AudioTrack {
                    name: "audio_0".into(),
                    flags: 0,
                    gap_samples: 0,
                    samples: vec![1.0, 2.0, 3.0, 4.0],
                },
            ],
            video: vec![VideoFrame {
                timestamp: 1_450_000_000,
                width: 2,
                height: 1,
                flags: 0,
                data: vec![1, 2, 3, 4, 5, 6],
            }],
            text: vec![TextItem {
                pad: "text_0".into(),
                flags: text_flags::LATE | text_flags::LOOPBACK,
                offset: -30_000_000,
                text: "Paris ✓".into(),
                fields: vec![
                    ("request_id".into(), "r1".into()),
                    ("final".into(), "true".into()),
                ],
            }],
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let packet = sample_packet();
        let bytes = packet.to_bytes().unwrap();
        assert_eq!(&bytes[0..4], b"MTRN");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 1);
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 7);
        assert_eq!(u16::from_le_bytes([bytes[40], bytes[41]]), 2);
        // First track: name length 5 right after the header, samples after flags and gap count.
        assert_eq!(u16::from_le_bytes([bytes[64], bytes[65]]), 5);
        let first_sample_at = 64 + 2 + 5 + 4 + 4;
        assert_eq!(
            f32::from_le_bytes(
                bytes[first_sample_at..first_sample_at + 4]
                    .try_into()
                    .unwrap()
            ),
            0.5
        );
        assert_eq!(Packet::parse(&bytes).unwrap(), packet);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_packet().to_bytes().unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    Packet::parse(&bytes[..len]),
                    Err(PacketError::Truncated { .. } | PacketError::BadMagic)
                ),
                "prefix of {len} bytes parsed"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Packet::parse(&longer), Err(PacketError::TrailingBytes(1)));
    }

    #[test]
    fn wrong_version_and_magic_are_named() {
        let mut bytes = sample_packet().to_bytes().unwrap();
        bytes[4] = 2;
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::UnsupportedVersion(2))
        );
        assert!(
            Packet::parse(&bytes)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        bytes[4] = 1;
        bytes[0] = b'X';
        assert_eq!(Packet::parse(&bytes), Err(PacketError::BadMagic));
    }

    #[test]
    fn writer_refuses_bad_sections() {
        let packet = sample_packet();
        let mut out = Vec::new();
        let mut writer = PacketWriter::begin(&mut out, &packet.header);
        assert!(writer.audio_track("audio", 0, 0, &[0.0; 3]).is_err());
        writer
            .text_item("text_0", 0, 0, "hi", std::iter::empty())
            .unwrap();
        assert!(writer.audio_track("audio", 0, 0, &[0.0; 4]).is_err());
        assert!(writer.video_frame(0, 2, 2, 0, &[0; 12]).is_err());
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        let samples = 0u32..8;
        samples.prop_flat_map(|n| {
            let track = (
                "[a-z_0-9]{0,8}",
                any::<u32>(),
                0..=n,
                proptest::collection::vec(any::<f32>(), n as usize),
            )
                .prop_map(|(name, flags, gap_samples, samples)| AudioTrack {
                    name,
                    flags,
                    gap_samples,
                    samples,
                });
            let frame = (any::<u64>(), 0u32..4, 0u32..4).prop_flat_map(|(ts, w, h)| {
                proptest::collection::vec(any::<u8>(), (w * h * 3) as usize).prop_map(move |data| {
                    VideoFrame {
                        timestamp: ts,
                        width: w,
                        height: h,
                        flags: 0,
                        data,
                    }
                })
            });
            let item = (
                "\\PC{0,6}",
                any::<u32>(),
                any::<i64>(),
                "\\PC{0,12}",
                proptest::collection::vec(("\\PC{0,4}", "\\PC{0,4}"), 0..3),
            )
                .prop_map(|(pad, flags, offset, text, fields)| TextItem {
                    pad,
                    flags,
                    offset,
                    text,
                    fields,
                });
            (
                any::<u64>(),
                any::<u64>(),
                1u64..,
                any::<u32>(),
                proptest::collection::vec(track, 0..3),
                proptest::collection::vec(frame, 0..3),
                proptest::collection::vec(item, 0..4),
            )
                .prop_map(
                    move |(turn_index, start, duration, flags, audio, video, text)| Packet {
                        header: Header {
                            turn_index,
                            start,
                            duration,
                            audio_rate: 16_000,
                            flags,
                            video_flags: video_flags::PRESENT,
                            video_age: NO_VIDEO_AGE,
                            samples_per_track: n,
                        },
                        audio,
                        video,
                        text,
                    },
                )
        })
    }

    fn same_bits(a: &Packet, b: &Packet) -> bool {
        // f32 NaN != NaN: compare the serialised bytes instead of the values.
        a.to_bytes().unwrap() == b.to_bytes().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn fuzz_round_trip(packet in arb_packet()) {
            let bytes = packet.to_bytes().unwrap();
            let parsed = Packet::parse(&bytes).unwrap();
            prop_assert!(same_bits(&parsed, &packet));
        }

        #[test]
        fn fuzz_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn fuzz_mutated_packets_never_panic(
            packet in arb_packet(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = packet.to_bytes().unwrap();
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            // Either it parses into something that serialises back to the same bytes, or it
            // is an error; it never panics.
            if let Ok(parsed) = Packet::parse(&bytes) {
                prop_assert_eq!(parsed.to_bytes().unwrap(), bytes.clone());
            }
            let cut = cut.index(bytes.len() + 1);
            let _ = Packet::parse(&bytes[..cut]);
        }
    }
}
