//! Runs `pipelines/interaction-transcribe.pipeline` (filesrc ! wavparse ! … ! microturnmux !
//! interactionmodel) with the plugins as built (`GST_PLUGIN_PATH`, else
//! `<workspace>/target/debug`), as a user would with `scripts/gst-launch-file.sh`.

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
    // 16-bit mono WAV at 16 kHz.
    let mut bytes = Vec::new();
    let data_len = (script.audio.len() * 2) as u32;
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
    for s in &script.audio {
        bytes.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    std::fs::write(&wav, bytes).unwrap();

    let description = interaction_runtime::pipeline_file::load(
        workspace_root().join("pipelines/interaction-transcribe.pipeline"),
        &[
            ("INPUT", wav.to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
        ],
    )
    .expect("pipeline file");
    let pipeline = gst::parse::launch(&description)
        .expect("parse the pipeline (are the plugins built? cargo build --workspace)")
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().unwrap();
    let mut turn_ends = 0;
    let result = loop {
        let Some(message) = bus.timed_pop(gst::ClockTime::from_seconds(120)) else {
            break Err("no EOS within 120 s".to_owned());
        };
        match message.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!("{} ({:?})", e.error(), e.debug()));
            }
            gst::MessageView::Element(e)
                if e.structure().is_some_and(|s| {
                    s.name() == interaction_protocol::events::messages::USER_TURN_ENDED
                }) =>
            {
                turn_ends += 1;
            }
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result.expect("the pipeline runs to EOS");
    assert_eq!(turn_ends, 1);
    let captions = std::fs::read_to_string(&out).expect("the captions file");
    let text = captions
        .strip_prefix("user: ")
        .unwrap_or_else(|| panic!("a user caption: {captions:?}"));
    let wer = interaction_asr::word_error_rate(QUESTION, text);
    assert!(wer <= 0.10, "WER {wer} for {captions:?}");
}
