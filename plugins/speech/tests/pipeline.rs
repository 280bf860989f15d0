//! Runs `pipelines/speech-file-to-wav.pipeline` and `pipelines/speech-live.pipeline` with the
//! plugin as built (`libgstspeech.so`
//! from `GST_PLUGIN_PATH`, else `<workspace>/target/debug`), as a user would with
//! `scripts/gst-launch-file.sh`.

mod common;

use common::{rms, scratch, workspace_root};
use gst::prelude::*;

/// GStreamer with the built plugin on its path.
fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if std::env::var_os("GST_PLUGIN_PATH").is_none() {
            // SAFETY: runs once, before GStreamer starts and before any test reads the
            // environment (every test calls init() first, under this Once).
            unsafe {
                std::env::set_var("GST_PLUGIN_PATH", workspace_root().join("target/debug"));
            }
        }
        gst::init().expect("GStreamer");
    });
}

#[test]
fn live_pipeline_follows_the_clock_and_reports_latency() {
    init();
    let text_file = workspace_root().join("plugins/speech/tests/data/hello.txt");
    let description = interaction_runtime::pipeline_file::load(
        workspace_root().join("pipelines/speech-live.pipeline"),
        &[
            ("TEXT", text_file.to_str().unwrap()),
            ("SINK", "fakesink sync=true name=sink"),
        ],
    )
    .expect("pipeline file");
    let pipeline = gst::parse::launch(&description)
        .expect("parse the pipeline")
        .downcast::<gst::Pipeline>()
        .unwrap();
    let started = std::time::Instant::now();
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().unwrap();
    // The pipeline is live: the latency query says so, with speechsynth's one buffer.
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::AsyncDone],
    );
    let mut query = gst::query::Latency::new();
    assert!(pipeline.query(&mut query));
    let (live, min, _) = query.result();
    assert!(live);
    assert!(min >= gst::ClockTime::from_mseconds(10), "{min}");
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or an error");
    let elapsed = started.elapsed().as_secs_f64();
    let sink = pipeline.by_name("sink").unwrap();
    let last = sink
        .property::<Option<gst::Sample>>("last-sample")
        .and_then(|sample| sample.buffer_owned());
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(error) = message.view() {
        panic!("pipeline error: {} ({:?})", error.error(), error.debug());
    }
    // Played in real time: the wall clock took at least as long as the audio.
    let last = last.expect("audio reached the sink");
    let end = last.pts().unwrap() + last.duration().unwrap();
    let text = std::fs::read_to_string(&text_file).unwrap();
    let words = text.split_whitespace().count() as f64;
    assert!(end.seconds_f64() > 0.2 * words, "{end} of audio");
    assert!(
        elapsed >= end.seconds_f64() * 0.9,
        "{elapsed} s wall for {end} of audio"
    );
}

#[test]
fn file_to_wav_pipeline_speaks_the_file() {
    init();
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
