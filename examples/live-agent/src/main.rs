//! `live-agent`: the whole agent from the microphone to the speaker.
//!
//! It runs `pipelines/agent-live.pipeline` (built into the program): the microphone through
//! `webrtcdsp` echo cancellation into `microturnmux ! interactionmodel`, the answers of the
//! reasoning sidecar spoken by `speechsynth` on the speaker, with `webrtcechoprobe` just before
//! the speaker so that the agent does not hear itself. It prints the devices it uses and every
//! caption; Ctrl-C (SIGINT, or SIGTERM) sends EOS, waits for the pipeline to drain and exits 0.
//!
//! ```text
//! cargo run --release -p live-agent
//! cargo run --release -p live-agent -- --mic "pulsesrc device=..." --speaker pulsesink
//! ```
//!
//! `--mic` / `--speaker` (or `LIVE_AGENT_MIC` / `LIVE_AGENT_SPEAKER`) take any gst-launch
//! source or sink description; tests play a file at real-time pace
//! (`filesrc location=q.wav ! wavparse ! identity sync=true`) and use `fakesink sync=true`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;

/// The pipeline file this program runs (`# default` placeholders: MIC, SPEAKER, CAPTIONS,
/// MAX_TOKENS).
const PIPELINE: &str = include_str!("../../../pipelines/agent-live.pipeline");
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
/// How long the pipeline may take to drain after Ctrl-C.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

const USAGE: &str =
    "usage: live-agent [--mic DESCRIPTION] [--speaker DESCRIPTION] [--max-tokens N] [--verbose]

  --mic DESC       gst-launch source for the microphone (default: autoaudiosrc; env LIVE_AGENT_MIC)
  --speaker DESC   gst-launch sink for the speaker (default: autoaudiosink; env LIVE_AGENT_SPEAKER)
  --max-tokens N   most tokens per answer of the local reasoning model (default 24)
  --verbose        also print the agent's decisions (turn ends, barge-ins, ...)

Ctrl-C stops it cleanly.";

#[derive(Debug)]
struct Options {
    mic: String,
    speaker: String,
    max_tokens: u32,
    verbose: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        mic: std::env::var("LIVE_AGENT_MIC").unwrap_or_else(|_| "autoaudiosrc".into()),
        speaker: std::env::var("LIVE_AGENT_SPEAKER").unwrap_or_else(|_| "autoaudiosink".into()),
        max_tokens: 24,
        verbose: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--mic" => options.mic = value("--mic")?,
            "--speaker" => options.speaker = value("--speaker")?,
            "--max-tokens" => {
                let text = value("--max-tokens")?;
                options.max_tokens = text.parse().ok().filter(|n| *n > 0).ok_or(format!(
                    "--max-tokens takes a positive number, not {text:?}"
                ))?;
            }
            "--verbose" => options.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn init() -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    for register in [
        gstmicroturn::plugin_register_static,
        gstinteraction::plugin_register_static,
        gstspeech::plugin_register_static,
        gstreasoning::plugin_register_static,
    ] {
        register().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The device element inside `element` (an `autoaudiosrc` is a bin around the real one).
fn leaf(element: &gst::Element) -> gst::Element {
    if let Some(bin) = element.downcast_ref::<gst::Bin>()
        && let Some(child) = bin
            .iterate_recurse()
            .into_iter()
            .flatten()
            .find(|e| !e.is::<gst::Bin>())
    {
        return child;
    }
    element.clone()
}

/// `factory (device name)` of the device element.
fn describe(element: &gst::Element) -> String {
    let device = leaf(element);
    let factory = device
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_else(|| device.name().to_string());
    let name = ["device-name", "current-device", "device", "location"]
        .iter()
        .filter_map(|property| {
            let spec = device.find_property(property)?;
            if spec.value_type() != String::static_type() {
                return None;
            }
            device.property::<Option<String>>(property)
        })
        .find(|name| !name.is_empty());
    match name {
        Some(name) => format!("{factory} ({name})"),
        None => format!("{factory} (default device)"),
    }
}

/// Follows the first pad of each element in one direction until an element without one.
fn end_of_chain(start: &gst::Element, upstream: bool) -> gst::Element {
    let mut current = start.clone();
    for _ in 0..32 {
        let pads = if upstream {
            current.sink_pads()
        } else {
            current.src_pads()
        };
        let Some(next) = pads
            .first()
            .and_then(|pad| pad.peer())
            .and_then(|peer| peer.parent_element())
        else {
            break;
        };
        current = next;
    }
    current
}

fn print_devices(pipeline: &gst::Pipeline) {
    let microphone = pipeline
        .by_name("echocancel")
        .map(|e| describe(&end_of_chain(&e, true)));
    let speaker = pipeline
        .by_name("echoprobe")
        .map(|e| describe(&end_of_chain(&e, false)));
    println!(
        "devices: microphone {}, speaker {}",
        microphone.as_deref().unwrap_or("?"),
        speaker.as_deref().unwrap_or("?")
    );
    let _ = std::io::stdout().flush();
}

fn print_captions(sink: &gst_app::AppSink) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(|sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer()
                    && let Ok(map) = buffer.map_readable()
                {
                    let at = buffer.pts().map_or(0.0, |t| t.nseconds() as f64 / 1e9);
                    println!("[{at:7.1} s] {}", String::from_utf8_lossy(map.as_slice()));
                    let _ = std::io::stdout().flush();
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn run(options: &Options) -> Result<(), String> {
    init().map_err(|e| format!("GStreamer: {e}"))?;
    let max_tokens = options.max_tokens.to_string();
    let description =
        interaction_runtime::pipeline_file::PipelineFile::parse(PIPELINE)?.render(&[
            ("MIC", &options.mic),
            ("SPEAKER", &options.speaker),
            ("CAPTIONS", "appsink name=captions sync=false"),
            ("MAX_TOKENS", &max_tokens),
        ])?;
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| format!("the pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    if let Some(sink) = pipeline
        .by_name("captions")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    {
        print_captions(&sink);
    }

    let main_loop = glib::MainLoop::new(None, false);
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let _watch = {
        let main_loop = main_loop.clone();
        let failure = failure.clone();
        let verbose = options.verbose;
        bus.add_watch(move |_, message| {
            match message.view() {
                gst::MessageView::Eos(_) => main_loop.quit(),
                gst::MessageView::Error(e) => {
                    let source = message.src().map(|s| s.name().to_string());
                    if let Ok(mut failure) = failure.lock() {
                        *failure = Some(format!(
                            "{}: {} ({:?})",
                            source.as_deref().unwrap_or("?"),
                            e.error(),
                            e.debug()
                        ));
                    }
                    main_loop.quit();
                }
                gst::MessageView::Warning(w) => {
                    eprintln!("warning: {} ({:?})", w.error(), w.debug());
                }
                gst::MessageView::Element(e) if verbose => {
                    if let Some(s) = e.structure()
                        && s.name().starts_with("interaction/")
                        && s.name() != "interaction/progress"
                    {
                        eprintln!("{s}");
                    }
                }
                _ => {}
            }
            glib::ControlFlow::Continue
        })
        .map_err(|e| format!("bus watch: {e}"))?
    };

    // Ctrl-C: EOS from every source, so the answer in flight, the captions and the speaker
    // drain; a second Ctrl-C, or a drain that takes too long, stops at once.
    let stopping = Arc::new(AtomicBool::new(false));
    let forced = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let pipeline = pipeline.downgrade();
        let main_loop = main_loop.clone();
        let stopping = stopping.clone();
        let forced = forced.clone();
        glib_unix::unix_signal_add(signal, move || {
            if stopping.swap(true, Ordering::SeqCst) {
                forced.store(true, Ordering::SeqCst);
                main_loop.quit();
                return glib::ControlFlow::Break;
            }
            eprintln!("stopping: end of stream...");
            if let Some(pipeline) = pipeline.upgrade() {
                pipeline.send_event(gst::event::Eos::new());
            }
            let main_loop = main_loop.clone();
            let forced = forced.clone();
            glib::timeout_add_once(DRAIN_TIMEOUT, move || {
                forced.store(true, Ordering::SeqCst);
                main_loop.quit();
            });
            glib::ControlFlow::Continue
        });
    }

    eprintln!(
        "loading the models (Silero VAD, Smart Turn, Whisper tiny.en, Piper voice, SmolLM2)..."
    );
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| "the pipeline did not start")?;
        let (state, _, _) = pipeline.state(gst::ClockTime::from_seconds(120));
        state.map_err(|_| "the pipeline did not reach PLAYING")?;
        print_devices(&pipeline);
        eprintln!("listening: speak to the agent; Ctrl-C stops");
        main_loop.run();
        Ok::<(), String>(())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(error) = failure.lock().ok().and_then(|mut f| f.take()) {
        return Err(error);
    }
    result?;
    if forced.load(Ordering::SeqCst) {
        return Err("stopped without a clean end of stream".into());
    }
    eprintln!("stopped cleanly");
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
