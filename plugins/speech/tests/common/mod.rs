//! Helpers shared by the speechsynth tests.
#![allow(dead_code)]

use interaction_protocol::events::Progress;

pub const RATE: u32 = 22_050;

pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer");
        gstspeech::plugin_register_static().expect("register the speech plugin");
    });
}

/// A `speechsynth` with `properties` set, in a harness (which starts it at once).
pub fn harness(properties: &[(&str, &str)]) -> gst_check::Harness {
    let mut builder = gst::ElementFactory::make("speechsynth");
    for (name, value) in properties {
        builder = builder.property_from_str(name, value);
    }
    let element = builder.build().expect("speechsynth");
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str("text/x-raw,format=utf8");
    h
}

pub fn text_buffer(text: &str) -> gst::Buffer {
    gst::Buffer::from_slice(text.as_bytes().to_vec())
}

/// S16LE samples of a buffer as floats.
pub fn samples(buffer: &gst::BufferRef) -> Vec<f32> {
    let map = buffer.map_readable().expect("readable");
    map.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// Everything the element output until EOS, non-live.
pub struct Output {
    pub buffers: Vec<gst::Buffer>,
    pub samples: Vec<f32>,
    pub progress: Vec<Progress>,
}

pub fn pull_until_eos(h: &mut gst_check::Harness) -> Output {
    let mut buffers = Vec::new();
    while let Some(buffer) = h.pull_until_eos().expect("output before the timeout") {
        buffers.push(buffer);
    }
    let samples = buffers.iter().flat_map(|b| samples(b)).collect();
    let progress = upstream_progress(h);
    Output {
        buffers,
        samples,
        progress,
    }
}

/// The progress events that reached the harness so far.
pub fn upstream_progress(h: &mut gst_check::Harness) -> Vec<Progress> {
    let mut progress = Vec::new();
    while let Some(event) = h.try_pull_upstream_event() {
        if let Some(p) = Progress::parse(&event) {
            progress.push(p);
        }
    }
    progress
}

/// Timestamps are continuous: each buffer starts where the previous one ended, and its
/// duration matches its sample count (to 1 µs).
pub fn assert_continuous(buffers: &[gst::Buffer], start: gst::ClockTime) {
    let mut expected = start;
    let mut samples_so_far = 0u64;
    for buffer in buffers {
        let pts = buffer.pts().expect("every buffer has a timestamp");
        assert_eq!(pts, expected, "gap or overlap at {pts}");
        let n = (buffer.size() / 2) as u64;
        samples_so_far += n;
        let end =
            start + gst::ClockTime::from_nseconds(samples_so_far * 1_000_000_000 / u64::from(RATE));
        assert_eq!(pts + buffer.duration().expect("duration"), end);
        expected = end;
    }
}

pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

/// Writes 16-bit mono PCM WAV.
pub fn write_wav(path: &std::path::Path, samples: &[f32], rate: u32) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).expect("write wav");
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("speechsynth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
