//! Runs `pipelines/interaction-transcribe.pipeline` (filesrc ! wavparse ! … ! microturnmux !
//! interactionmodel) and `pipelines/interaction-vision.pipeline` (the same with a still picture
//! as a camera) with the plugins as built (`GST_PLUGIN_PATH`, else `<workspace>/target/debug`),
//! as a user would with `scripts/gst-launch-file.sh`.

mod common;

use std::path::{Path, PathBuf};

use gst::prelude::*;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// GStreamer with the built plugins on its path (no static registration in this binary).
fn init_from_path() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if std::env::var_os("GST_PLUGIN_PATH").is_none() {
            // SAFETY: runs once, before GStreamer starts and before anything reads the
            // environment (the only test calls this first).
            unsafe {
                std::env::set_var("GST_PLUGIN_PATH", workspace_root().join("target/debug"));
            }
        }
        gst::init().expect("GStreamer");
    });
}

#[test]
fn transcribe_pipeline_file_writes_the_captions() {
    init_from_path();
    const QUESTION: &str = "Could you help me plan a trip to the mountains?";
    let script = common::Script::default()
        .silence(500)
        .piper(QUESTION)
        .silence(1500);
    let dir = common::scratch_dir("pipeline");
    let wav = dir.join("question.wav");
    let out = dir.join("captions.txt");
    let _ = std::fs::remove_file(&out);
    write_wav(&wav, &script.audio);

    let description = interaction_runtime::pipeline_file::load(
        workspace_root().join("pipelines/interaction-transcribe.pipeline"),
        &[
            ("INPUT", wav.to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
        ],
    )
    .expect("pipeline file");
    let messages = run(&description).expect("the pipeline runs to EOS");
    let turn_ends = messages
        .iter()
        .filter(|s| s.name() == interaction_protocol::events::messages::USER_TURN_ENDED)
        .count();
    assert_eq!(turn_ends, 1);
    let captions = std::fs::read_to_string(&out).expect("the captions file");
    let text = captions
        .strip_prefix("user: ")
        .unwrap_or_else(|| panic!("a user caption: {captions:?}"));
    let wer = interaction_asr::word_error_rate(QUESTION, text);
    assert!(wer <= 0.10, "WER {wer} for {captions:?}");
}

#[test]
fn vision_pipeline_file_puts_what_the_camera_saw_into_the_context_package() {
    init_from_path();
    let script = common::Script::default()
        .silence(600)
        .say("What is this board on my desk?")
        .silence(1600)
        .whole_turns();
    let dir = common::scratch_dir("pipeline");
    let wav = dir.join("vision-question.wav");
    let out = dir.join("contexts.json");
    let _ = std::fs::remove_file(&out);
    write_wav(&wav, &script.audio);
    // As long as the audio, at 5 frames per second.
    let frames = script.audio.len().div_ceil(common::RATE / 5);
    let root = workspace_root();
    let image = root.join("models/efficientnet/testdata/pcb.png");
    let model = gstinteraction::package::source_packages_dir().join("cascade-default");
    let description = interaction_runtime::pipeline_file::load(
        root.join("pipelines/interaction-vision.pipeline"),
        &[
            ("INPUT", wav.to_str().unwrap()),
            ("IMAGE", image.to_str().unwrap()),
            ("FRAMES", &frames.to_string()),
            ("MODEL", model.to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
        ],
    )
    .expect("pipeline file");
    let messages = run(&description).expect("the pipeline runs to EOS");
    let observed: Vec<(u64, String)> = messages
        .iter()
        .filter(|s| s.name() == gstinteraction::vision::OBSERVATION)
        .map(|s| {
            (
                s.get::<u64>("frame-time").unwrap(),
                s.get::<String>("label").unwrap(),
            )
        })
        .collect();
    // Frames every 200 ms from 0; one classified per second of running time.
    let seconds = (frames as u64).div_ceil(5);
    let expected: Vec<(u64, String)> = (0..seconds)
        .map(|s| (s * 1_000_000_000, "modem".to_owned()))
        .collect();
    assert_eq!(observed, expected);
    let bytes = std::fs::read(&out).expect("the context packages");
    let packages: Vec<interaction_protocol::context::ContextPackage> =
        serde_json::Deserializer::from_slice(&bytes)
            .into_iter::<serde_json::Value>()
            .map(|v| {
                interaction_protocol::context::ContextPackage::parse(
                    v.expect("JSON").to_string().as_bytes(),
                )
                .expect("a context package")
            })
            .collect();
    assert_eq!(packages.len(), 1, "one user turn");
    let package = &packages[0];
    let latest = observed
        .iter()
        .map(|(t, _)| *t)
        .filter(|&t| t < package.trigger.running_time_ns)
        .max()
        .expect("a frame before the end of the turn");
    let labels: Vec<&str> = package
        .observations
        .iter()
        .map(|o| o.label.as_str())
        .collect();
    assert_eq!(labels.len(), 3, "{package:?}");
    assert_eq!(labels[0], "modem");
    assert!(
        package
            .observations
            .iter()
            .all(|o| o.source == "camera" && o.running_time_ns == latest)
    );
}

/// Runs a pipeline description to EOS; returns the element messages on the bus.
fn run(description: &str) -> Result<Vec<gst::Structure>, String> {
    let pipeline = gst::parse::launch(description)
        .expect("parse the pipeline (are the plugins built? cargo build --workspace)")
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().unwrap();
    let mut messages = Vec::new();
    let result = loop {
        let Some(message) = bus.timed_pop(gst::ClockTime::from_seconds(120)) else {
            break Err("no EOS within 120 s".to_owned());
        };
        match message.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!("{} ({:?})", e.error(), e.debug()));
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    messages.push(s.to_owned());
                }
            }
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result.map(|()| messages)
}

/// `audio` (16 kHz mono) as a 16-bit WAV file.
fn write_wav(wav: &Path, audio: &[f32]) {
    let mut bytes = Vec::new();
    let data_len = (audio.len() * 2) as u32;
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    bytes.extend_from_slice(&32_000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in audio {
        bytes.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    std::fs::write(wav, bytes).unwrap();
}
