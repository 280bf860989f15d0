//! Runs `pipelines/speech-file-to-wav.pipeline` with the plugin as built (`libgstspeech.so`
//! from `GST_PLUGIN_PATH`, else `<workspace>/target/debug`), as a user would with
//! `scripts/gst-launch-file.sh`.

mod common;

use common::{rms, scratch, workspace_root};
use gst::prelude::*;

#[test]
fn file_to_wav_pipeline_speaks_the_file() {
    if std::env::var_os("GST_PLUGIN_PATH").is_none() {
        // SAFETY: this test binary holds this one test, so no other thread reads the
        // environment yet; GStreamer is not initialised before this line.
        unsafe {
            std::env::set_var("GST_PLUGIN_PATH", workspace_root().join("target/debug"));
        }
    }
    gst::init().expect("GStreamer");
    let factory = gst::ElementFactory::find("speechsynth")
        .expect("speechsynth from GST_PLUGIN_PATH (build the workspace first)");
    let plugin = factory.plugin().expect("plugin");
    assert!(
        plugin.filename().is_some(),
        "the element comes from libgstspeech.so"
    );

    let dir = scratch("pipeline");
    let out = dir.join("speech.wav");
    let text_file = workspace_root().join("plugins/speech/tests/data/hello.txt");
    let description = interaction_runtime::pipeline_file::load(
        workspace_root().join("pipelines/speech-file-to-wav.pipeline"),
        &[
            ("TEXT", text_file.to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
        ],
    )
    .expect("pipeline file");
    let pipeline = gst::parse::launch(&description).expect("parse the pipeline");
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or an error within two minutes");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(error) = message.view() {
        panic!("pipeline error: {} ({:?})", error.error(), error.debug());
    }

    let wav = std::fs::read(&out).expect("the WAV file");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    let channels = u16::from_le_bytes([wav[22], wav[23]]);
    assert_eq!((rate, channels), (22_050, 1));
    let samples: Vec<f32> = wav[44..]
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let text = std::fs::read_to_string(&text_file).unwrap();
    let words = text.split_whitespace().count() as f64;
    let seconds = samples.len() as f64 / 22_050.0;
    assert!(
        (0.2 * words..0.6 * words).contains(&seconds),
        "{seconds} s for {words} words"
    );
    assert!(rms(&samples) > 0.02);
}
