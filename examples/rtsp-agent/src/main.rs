//! `rtsp-agent`: the whole agent behind an RTSP server (gst-rtsp-server).
//!
//! The user's audio comes from an RTSP URL (`rtsp://…`, any stream `uridecodebin` can decode)
//! or from RTP over UDP (`rtp://HOST:PORT`, Opus, payload type 96). It goes through
//! `microturnmux ! interactionmodel`; the reasoning sidecar's answers are spoken by
//! `speechsynth`. The agent's voice (Opus, `pay0`) and its captions (`pay1`, `rtpgstpay`: one
//! `text/x-raw` buffer per caption, "speaker: text") are served at
//! `rtsp://127.0.0.1:8554/agent` to every client (one shared media). The agent runs from the
//! start, whether or not anyone watches; a client gets the stream from the moment it connects.
//!
//! ```text
//! cargo run --release -p rtsp-agent -- --input rtp://127.0.0.1:5004
//! gst-launch-1.0 autoaudiosrc ! audioconvert ! audioresample ! opusenc \
//!     ! rtpopuspay pt=96 ! udpsink host=127.0.0.1 port=5004
//! gst-launch-1.0 rtspsrc location=rtsp://127.0.0.1:8554/agent ! rtpopusdepay ! opusdec \
//!     ! autoaudiosink
//! ```
//!
//! It binds to 127.0.0.1 unless `--address` says otherwise. `--auth user:password` turns on
//! basic authentication: only that user may open the stream.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_rtsp_server::prelude::*;

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const MOUNT: &str = "/agent";

const USAGE: &str = "usage: rtsp-agent --input URL [--address ADDR] [--port PORT] [--auth USER:PASSWORD] [--max-tokens N]

  --input URL        the user's audio: rtsp://... (any stream uridecodebin decodes) or
                     rtp://HOST:PORT (RTP over UDP, Opus, payload type 96; HOST is the address to
                     listen on)
  --address ADDR     address the RTSP server binds to (default 127.0.0.1)
  --port PORT        RTSP port (default 8554; 0 picks a free one, printed at start)
  --auth USER:PASS   basic authentication: only this user may open rtsp://.../agent
  --max-tokens N     most tokens per answer of the local reasoning model (default 24)

Serves rtsp://ADDR:PORT/agent: the agent's voice (Opus) and its captions (rtpgstpay, text).
Ctrl-C stops it.";

#[derive(Debug)]
struct Options {
    input: String,
    address: String,
    port: u16,
    auth: Option<(String, String)>,
    max_tokens: u32,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        input: String::new(),
        address: "127.0.0.1".into(),
        port: 8554,
        auth: None,
        max_tokens: 24,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--input" => options.input = value("--input")?,
            "--address" => options.address = value("--address")?,
            "--port" => {
                let text = value("--port")?;
                options.port = text
                    .parse()
                    .map_err(|_| format!("--port takes a port number, not {text:?}"))?;
            }
            "--auth" => {
                let text = value("--auth")?;
                let (user, password) = text
                    .split_once(':')
                    .filter(|(user, password)| !user.is_empty() && !password.is_empty())
                    .ok_or("--auth takes USER:PASSWORD")?;
                options.auth = Some((user.to_owned(), password.to_owned()));
            }
            "--max-tokens" => {
                let text = value("--max-tokens")?;
                options.max_tokens = text.parse().ok().filter(|n| *n > 0).ok_or(format!(
                    "--max-tokens takes a positive number, not {text:?}"
                ))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.input.is_empty() {
        return Err("--input is required".into());
    }
    Ok(options)
}

/// The gst-launch source for the user's audio.
fn input_source(url: &str) -> Result<String, String> {
    if let Some(rest) = url.strip_prefix("rtp://") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or(format!("{url}: rtp:// needs HOST:PORT"))?;
        let port: u16 = port
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("{url}: bad port"))?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("{url}: bad host"));
        }
        Ok(format!(
            "udpsrc address={host} port={port} \
               caps=\"application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96\" \
             ! rtpjitterbuffer latency=60 ! rtpopusdepay ! opusdec"
        ))
    } else if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
        if url.contains(char::is_whitespace) || url.contains('"') {
            return Err(format!("{url}: bad URL"));
        }
        Ok(format!("uridecodebin uri=\"{url}\""))
    } else {
        Err(format!(
            "{url}: the input must be rtsp://... or rtp://HOST:PORT"
        ))
    }
}

/// The agent: the user's audio in, its voice and captions out to appsinks. As in the pipeline
/// files of `pipelines/`, the agent with its loop-back is a bin of its own (so that the sources
/// start after it) and the filler is off (see pipelines/README.md).
fn agent_description(options: &Options) -> Result<String, String> {
    Ok(format!(
        "{source} ! queue ! audioconvert ! audioresample \
           ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! mux.audio \
         ( name=agent \
           microturnmux name=mux start-time-selection=first latency=300000000 text_0::loopback=true \
           ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000 \
           ! interactionmodel name=im filler-ms=0 \
           im.reasoning ! queue ! reasoningsidecar max-tokens={tokens} ! mux.text_0 ) \
         im.speech ! queue ! speechsynth is-live=true ! audioconvert ! audioresample \
           ! audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1 \
           ! appsink name=voice sync=false async=false \
         im.transcript ! queue ! appsink name=captions sync=false async=false",
        source = input_source(&options.input)?,
        tokens = options.max_tokens,
    ))
}

/// What each client's media plays: the agent's voice and captions, pushed by the application.
const MEDIA: &str = "( appsrc name=voice is-live=true do-timestamp=true format=time \
      caps=audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1 \
    ! audioconvert ! opusenc ! rtpopuspay name=pay0 pt=96 \
  appsrc name=captions is-live=true do-timestamp=true format=time caps=text/x-raw,format=utf8 \
    ! rtpgstpay name=pay1 pt=97 config-interval=1 )";

/// The appsrcs of the media that are playing now; the agent's output is copied into each.
#[derive(Default)]
struct Outputs {
    voice: Vec<gst_app::AppSrc>,
    captions: Vec<gst_app::AppSrc>,
}

/// Pushes a copy of `buffer` (timestamps cleared: each appsrc stamps it on arrival) into every
/// appsrc, dropping those whose media has gone.
fn fan_out(targets: &mut Vec<gst_app::AppSrc>, buffer: &gst::BufferRef) {
    targets.retain(|appsrc| {
        let mut copy = buffer.copy();
        if let Some(copy) = copy.get_mut() {
            copy.set_pts(gst::ClockTime::NONE);
            copy.set_dts(gst::ClockTime::NONE);
        }
        appsrc.push_buffer(copy).is_ok()
    });
}

fn connect_outputs(agent: &gst::Pipeline, outputs: &Arc<Mutex<Outputs>>) -> Result<(), String> {
    let sink = |name: &str| {
        agent
            .by_name(name)
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or(format!("the agent pipeline has no appsink {name}"))
    };
    let voice_outputs = outputs.clone();
    sink("voice")?.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let (Some(buffer), Ok(mut outputs)) = (sample.buffer(), voice_outputs.lock()) {
                    fan_out(&mut outputs.voice, buffer);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let caption_outputs = outputs.clone();
    sink("captions")?.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer() {
                    if let Ok(map) = buffer.map_readable() {
                        println!("caption: {}", String::from_utf8_lossy(map.as_slice()));
                        let _ = std::io::stdout().flush();
                    }
                    if let Ok(mut outputs) = caption_outputs.lock() {
                        fan_out(&mut outputs.captions, buffer);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

fn server(
    options: &Options,
    outputs: &Arc<Mutex<Outputs>>,
) -> Result<gst_rtsp_server::RTSPServer, String> {
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&options.address);
    server.set_service(&options.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or("the server has no mount points")?;
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(MEDIA);
    factory.set_shared(true);
    let outputs = outputs.clone();
    factory.connect_media_configure(move |_, media| {
        let Some(bin) = media.element().downcast::<gst::Bin>().ok() else {
            return;
        };
        let appsrc = |name: &str| {
            bin.by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        };
        let (Some(voice), Some(captions)) = (appsrc("voice"), appsrc("captions")) else {
            eprintln!("error: the media has no voice or captions appsrc");
            return;
        };
        // A live RTSP media is prepared once every stream has sent a buffer: an empty caption
        // when the captions stream first asks for data lets it start before the first real one.
        let started = AtomicBool::new(false);
        captions.set_callbacks(
            gst_app::AppSrcCallbacks::builder()
                .need_data(move |appsrc, _| {
                    if !started.swap(true, Ordering::SeqCst) {
                        let _ = appsrc.push_buffer(gst::Buffer::new());
                    }
                })
                .build(),
        );
        if let Ok(mut outputs) = outputs.lock() {
            outputs.voice.push(voice);
            outputs.captions.push(captions);
        }
    });
    if let Some((user, password)) = &options.auth {
        let auth = gst_rtsp_server::RTSPAuth::new();
        let token = gst_rtsp_server::RTSPToken::builder()
            .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "listener")
            .build();
        auth.add_basic(
            gst_rtsp_server::RTSPAuth::make_basic(user, password).as_str(),
            &token,
        );
        server.set_auth(Some(&auth));
        let role = gst::Structure::builder("listener")
            .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
            .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
            .build();
        factory.add_role_from_structure(&role);
    }
    mounts.add_factory(MOUNT, factory);
    Ok(server)
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

fn run(options: &Options) -> Result<(), String> {
    init().map_err(|e| format!("GStreamer: {e}"))?;
    let agent = gst::parse::launch(&agent_description(options)?)
        .map_err(|e| format!("the agent pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let outputs: Arc<Mutex<Outputs>> = Arc::default();
    connect_outputs(&agent, &outputs)?;

    let main_loop = glib::MainLoop::new(None, false);
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let bus = agent.bus().ok_or("the pipeline has no bus")?;
    let _watch = {
        let main_loop = main_loop.clone();
        let failure = failure.clone();
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
                _ => {}
            }
            glib::ControlFlow::Continue
        })
        .map_err(|e| format!("bus watch: {e}"))?
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let main_loop = main_loop.clone();
        let interrupted = interrupted.clone();
        glib_unix::unix_signal_add(signal, move || {
            interrupted.store(true, Ordering::SeqCst);
            main_loop.quit();
            glib::ControlFlow::Break
        });
    }

    eprintln!(
        "loading the models (Silero VAD, Smart Turn, Whisper tiny.en, Piper voice, SmolLM2)..."
    );
    let result = (|| {
        agent
            .set_state(gst::State::Playing)
            .map_err(|_| "the agent pipeline did not start")?;
        let (state, _, _) = agent.state(gst::ClockTime::from_seconds(120));
        state.map_err(|_| "the agent pipeline did not reach PLAYING")?;
        let server = server(options, &outputs)?;
        let _source = server.attach(None).map_err(|e| {
            format!(
                "the RTSP server cannot listen on {}:{} ({e})",
                options.address, options.port
            )
        })?;
        println!(
            "serving rtsp://{}:{}{MOUNT} (input {}{})",
            options.address,
            server.bound_port(),
            options.input,
            if options.auth.is_some() {
                ", basic authentication"
            } else {
                ""
            }
        );
        let _ = std::io::stdout().flush();
        main_loop.run();
        Ok::<(), String>(())
    })();
    let _ = agent.set_state(gst::State::Null);
    if let Some(error) = failure.lock().ok().and_then(|mut f| f.take()) {
        return Err(error);
    }
    result?;
    if interrupted.load(Ordering::SeqCst) {
        eprintln!("stopped");
    }
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
