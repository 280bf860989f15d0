//! `embed-agent`: the smallest application that embeds the agent (the top-level README shows
//! it). It builds the pipeline element by element in Rust, prints the interaction model's
//! decision messages and captions, and feeds every line typed on standard input into the
//! aligner as chat text. End of input (Ctrl-D) ends the stream; the program exits 0 at EOS.
//!
//! ```text
//! cargo run --release -p embed-agent                       # microphone, speaker
//! echo "What is the capital of France?" | cargo run -p embed-agent -- \
//!     --source "audiotestsrc is-live=true wave=silence" --sink fakesink
//! ```

use std::io::BufRead;
use std::process::ExitCode;

use gst::prelude::*;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("embed-agent: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut source = "autoaudiosrc".to_owned();
    let mut sink = "autoaudiosink".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--source" => source = args.next().ok_or("--source needs a description")?,
            "--sink" => sink = args.next().ok_or("--sink needs a description")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    // 1. The plugins, registered from their Rust crates (no GST_PLUGIN_PATH needed).
    gst::init()?;
    gstmicroturn::plugin_register_static()?;
    gstinteraction::plugin_register_static()?;
    gstspeech::plugin_register_static()?;
    gstreasoning::plugin_register_static()?;

    // 2. The pipeline. The microphone and the chat go into the aligner; the interaction model
    //    speaks through the synthesizer, and the sidecar's answers loop back into the aligner.
    let pipeline = gst::Pipeline::new();
    let mic = gst::parse::bin_from_description(
        &format!("{source} ! audioconvert ! audioresample"),
        true,
    )?;
    let mux = gst::ElementFactory::make("microturnmux")
        .property_from_str("start-time-selection", "first")
        .property("latency", 60_000_000u64)
        .build()?;
    let model_queue = gst::ElementFactory::make("queue").build()?;
    let model = gst::ElementFactory::make("interactionmodel").build()?;
    let speech_queue = gst::ElementFactory::make("queue").build()?;
    let synth = gst::ElementFactory::make("speechsynth")
        .property("is-live", true)
        .build()?;
    let speaker =
        gst::parse::bin_from_description(&format!("audioconvert ! audioresample ! {sink}"), true)?;
    let reasoning_queue = gst::ElementFactory::make("queue").build()?;
    let sidecar = gst::ElementFactory::make("reasoningsidecar")
        .property("max-tokens", 24u32)
        .build()?;
    let transcript_queue = gst::ElementFactory::make("queue").build()?;
    let captions = gst_app::AppSink::builder()
        .sync(false)
        .async_(false)
        .build();
    let chat = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("text/x-raw")
                .field("format", "utf8")
                .build(),
        )
        .format(gst::Format::Time)
        .is_live(true)
        // A live source answers the latency query only with a known minimum.
        .min_latency(0)
        .build();
    pipeline.add_many([
        mic.upcast_ref::<gst::Element>(),
        &mux,
        &model_queue,
        &model,
        &speech_queue,
        &synth,
        speaker.upcast_ref(),
        &reasoning_queue,
        &sidecar,
        &transcript_queue,
        captions.upcast_ref(),
        chat.upcast_ref(),
    ])?;
    gst::Element::link_many([mic.upcast_ref::<gst::Element>(), &mux, &model_queue, &model])?;
    model.link_pads(Some("speech"), &speech_queue, None)?;
    gst::Element::link_many([&speech_queue, &synth, speaker.upcast_ref()])?;
    model.link_pads(Some("transcript"), &transcript_queue, None)?;
    transcript_queue.link(&captions)?;
    model.link_pads(Some("reasoning"), &reasoning_queue, None)?;
    reasoning_queue.link(&sidecar)?;
    // The sidecar's answers come back on a loop-back text pad; chat text on another text pad.
    sidecar.link_pads(None, &mux, Some("text_0"))?;
    mux.static_pad("text_0")
        .ok_or("microturnmux has no text_0")?
        .set_property("loopback", true);
    chat.link_pads(None, &mux, Some("text_1"))?;

    // 3. Captions as they come.
    captions.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(|sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    println!("caption  {}", String::from_utf8_lossy(&map).trim());
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    pipeline.set_state(gst::State::Playing)?;

    // 4. Chat: each line of standard input goes into the aligner, stamped with the pipeline's
    //    running time; end of input ends the stream.
    let chat_pipeline = pipeline.downgrade();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let Some(pipeline) = chat_pipeline.upgrade() else {
                break;
            };
            let mut buffer = gst::Buffer::from_slice(line.into_bytes());
            if let Some(buffer) = buffer.get_mut() {
                buffer.set_pts(pipeline.current_running_time());
            }
            if chat.push_buffer(buffer).is_err() {
                break;
            }
        }
        if let Some(pipeline) = chat_pipeline.upgrade() {
            // The bus loop below learns of the end of input from this message.
            let _ = pipeline.post_message(
                gst::message::Application::builder(gst::Structure::new_empty(END_OF_INPUT)).build(),
            );
            pipeline.send_event(gst::event::Eos::new());
        }
    });

    // 5. The decision messages (`interaction/...`) on the bus, until EOS or an error. After the
    //    end of input the pipeline drains (the last answer is spoken) within DRAIN_TIMEOUT, or
    //    the program says where the EOS stopped and exits with an error.
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let mut outcome = Ok(());
    let mut input_ended: Option<std::time::Instant> = None;
    loop {
        if let Some(ended) = input_ended
            && ended.elapsed() > DRAIN_TIMEOUT
        {
            outcome = Err(format!(
                "the pipeline did not drain within {} s of the end of input (no EOS yet on {})",
                DRAIN_TIMEOUT.as_secs(),
                pads_without_eos(&pipeline).join(", ")
            )
            .into());
            break;
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(250)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Application(app)
                if app.structure().is_some_and(|s| s.name() == END_OF_INPUT) =>
            {
                input_ended = Some(std::time::Instant::now());
            }
            gst::MessageView::Element(element) => {
                if let Some(s) = element.structure()
                    && let Some(decision) = s.name().strip_prefix("interaction/")
                {
                    let at = s.get::<u64>("running-time").unwrap_or(0) as f64 / 1e9;
                    println!("decision {decision} at {at:.2} s");
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(error) => {
                outcome = Err(format!("{} ({:?})", error.error(), error.debug()).into());
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    outcome
}

/// The application message the chat thread posts when standard input ends.
const END_OF_INPUT: &str = "embed-agent/end-of-input";

/// How long the pipeline may take to speak its last answer and end after the end of input.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The sink pads in the pipeline that have not yet seen EOS, as `element:pad` (where a stalled
/// drain stopped).
fn pads_without_eos(pipeline: &gst::Pipeline) -> Vec<String> {
    pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .flat_map(|element| {
            element
                .sink_pads()
                .into_iter()
                .filter(|pad| !pad.pad_flags().contains(gst::PadFlags::EOS))
                .map(move |pad| format!("{}:{}", element.name(), pad.name()))
        })
        .collect()
}
