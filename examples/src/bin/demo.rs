//! `make demo`: the most complete real pipeline the project has, run on the embedded defaults.
//!
//! Today that is: a recording of the user's side goes through a real GStreamer pipeline
//! (`filesrc ! wavparse ! audioconvert ! audioresample ! appsink`, 16 kHz mono F32), and Silero
//! VAD from the model cache scores every 32 ms frame through ONNX Runtime. The program prints
//! the speech segments it finds, in running time, and a one-line timeline. It grows into the
//! whole agent as the elements land.
//!
//! Usage: `demo INPUT.wav`

use std::process::ExitCode;
use std::time::Instant;

use gst::prelude::*;
use interaction_runtime::{model_file, ort_environment};
use ort::session::Session;
use ort::value::{Tensor, TensorValueType};

const RATE: usize = 16_000;
const FRAME: usize = 512;
const CONTEXT: usize = 64;
/// Speech starts above this probability and ends after `END_FRAMES` frames below `END_BELOW`.
const START_ABOVE: f32 = 0.5;
const END_BELOW: f32 = 0.35;
const END_FRAMES: usize = 8;

fn main() -> ExitCode {
    let Some(input) = std::env::args().nth(1) else {
        eprintln!("usage: demo INPUT.wav");
        return ExitCode::from(2);
    };
    match run(&input) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &str) -> Result<(), String> {
    let started = Instant::now();
    println!("demo: loading ONNX Runtime and Silero VAD from the model cache ...");
    let env = ort_environment().map_err(|e| e.to_string())?;
    let model = model_file("silero-vad/silero_vad.onnx").map_err(|e| e.to_string())?;
    let mut vad = Session::builder(env)
        .and_then(|builder| Ok(builder.with_intra_threads(1)?))
        .and_then(|mut builder| builder.commit_from_file(&model))
        .map_err(|e| format!("cannot load {}: {e}", model.display()))?;
    println!(
        "demo: models ready in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let audio = decode(input)?;
    println!(
        "demo: decoded {input} through GStreamer: {} samples, {:.2} s at 16 kHz",
        audio.len(),
        audio.len() as f64 / RATE as f64
    );

    let probabilities = score(&mut vad, &audio)?;
    let segments = segments(&probabilities);
    let frame_s = FRAME as f64 / RATE as f64;
    println!("demo: user speech found by Silero VAD (running time):");
    for (start, end) in &segments {
        println!(
            "  {:6.2} s – {:6.2} s  ({:.2} s)",
            *start as f64 * frame_s,
            *end as f64 * frame_s,
            (end - start) as f64 * frame_s
        );
    }
    let timeline: String = probabilities
        .chunks(6) // about 0.2 s per character
        .map(|chunk| {
            if chunk.iter().any(|p| *p > START_ABOVE) {
                '█'
            } else {
                '·'
            }
        })
        .collect();
    println!("demo: timeline (one mark per 192 ms): {timeline}");
    println!("demo: done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Decodes any WAV to 16 kHz mono F32 through a real GStreamer pipeline.
fn decode(input: &str) -> Result<Vec<f32>, String> {
    gst::init().map_err(|e| e.to_string())?;
    let caps = gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AUDIO_FORMAT_F32)
        .rate(RATE as i32)
        .channels(1)
        .build();
    let source = gst::ElementFactory::make("filesrc")
        .property("location", input)
        .build()
        .map_err(|e| e.to_string())?;
    let sink = gst_app::AppSink::builder().caps(&caps).sync(false).build();
    let pipeline = gst::Pipeline::new();
    let mut chain = vec![source];
    for name in ["wavparse", "audioconvert", "audioresample"] {
        chain.push(
            gst::ElementFactory::make(name)
                .build()
                .map_err(|e| format!("missing GStreamer element {name}: {e}"))?,
        );
    }
    chain.push(sink.clone().upcast());
    pipeline.add_many(&chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the pipeline: {e}"))?;

    let mut audio = Vec::new();
    let outcome = loop {
        match sink.pull_sample() {
            Ok(sample) => {
                let Some(buffer) = sample.buffer() else {
                    continue;
                };
                let map = buffer.map_readable().map_err(|e| e.to_string())?;
                audio.extend(
                    map.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            Err(_) => break error_from_bus(&pipeline),
        }
    };
    pipeline.set_state(gst::State::Null).ok();
    outcome.map(|()| audio)
}

/// After the sink stops: `Ok` on EOS, the pipeline's error otherwise.
fn error_from_bus(pipeline: &gst::Pipeline) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match message.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(error)) => Err(format!(
            "pipeline error: {} ({})",
            error.error(),
            error.debug().unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

/// Silero speech probability for every 512-sample frame, with 64 samples of context.
fn score(vad: &mut Session, audio: &[f32]) -> Result<Vec<f32>, String> {
    let err = |e: ort::Error| e.to_string();
    let mut state =
        Tensor::<f32>::from_array(([2usize, 1, 128], vec![0.0f32; 256])).map_err(err)?;
    let sample_rate = Tensor::<i64>::from_array(((), vec![RATE as i64])).map_err(err)?;
    let mut window = vec![0.0f32; CONTEXT + FRAME];
    let mut probabilities = Vec::with_capacity(audio.len() / FRAME);
    for frame in audio.chunks_exact(FRAME) {
        window.copy_within(FRAME.., 0);
        window[CONTEXT..].copy_from_slice(frame);
        let input =
            Tensor::<f32>::from_array(([1usize, CONTEXT + FRAME], window.clone())).map_err(err)?;
        let mut outputs = vad
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sample_rate.clone()])
            .map_err(err)?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(err)?;
        probabilities.push(p[0]);
        state = outputs
            .remove("stateN")
            .ok_or("silero gave no stateN")?
            .downcast::<TensorValueType<f32>>()
            .map_err(err)?;
    }
    Ok(probabilities)
}

/// Speech segments as (first frame, end frame) with simple hysteresis.
fn segments(probabilities: &[f32]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = None;
    let mut quiet = 0;
    for (index, p) in probabilities.iter().enumerate() {
        match start {
            None if *p > START_ABOVE => {
                start = Some(index);
                quiet = 0;
            }
            Some(first) if *p < END_BELOW => {
                quiet += 1;
                if quiet == END_FRAMES {
                    found.push((first, index + 1 - END_FRAMES));
                    start = None;
                }
            }
            Some(_) => quiet = 0,
            None => {}
        }
    }
    if let Some(first) = start {
        found.push((first, probabilities.len()));
    }
    found
}
