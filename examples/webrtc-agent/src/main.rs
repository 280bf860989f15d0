//! `webrtc-agent`: talk to the whole gst-interaction agent from a browser.
//!
//! ```sh
//! cargo run --release -p webrtc-agent          # then open http://127.0.0.1:8080/
//! ```
//!
//! It starts the agent (`microturnmux ! interactionmodel`, `speechsynth`, `reasoningsidecar`
//! looped back into the aligner; the plugins are registered statically, no `GST_PLUGIN_PATH`
//! needed), waits for the models to load, and then serves a page on loopback. The page gets
//! the microphone, connects through a WebSocket (`/ws`) and a `webrtcbin` send-receive
//! session: the browser's Opus audio is decoded, resampled to 16 kHz and fed to the agent; the
//! agent's speech goes back as Opus and plays in the page, with the captions beside it.
//!
//! - **One peer at a time.** A second page gets an error frame and is closed. The agent keeps
//!   running between peers (the models stay loaded), so a new page continues the same
//!   conversation.
//! - **ICE on loopback only** by default (`--ice-address 127.0.0.1`), no STUN/TURN: meant for a
//!   browser on the same machine. `--bind 0.0.0.0 --ice-address any` serves the local network
//!   instead (browsers allow the microphone only on `localhost` or HTTPS pages, so a remote
//!   browser needs a TLS proxy in front; not part of this example).
//! - **Ctrl-C** closes the open session, stops both pipelines and exits with status 0.
//! - Errors: a port in use, a missing `webrtcbin` (gst-plugins-bad) or `nicesrc`
//!   (gstreamer1.0-nice), or a model that does not load stop it with a message saying what to
//!   do, before it serves anything.
//!
//! Page options (query string): `?autostart=1` connects without a click; `?record=SECONDS`
//! records the microphone (left) and the agent (right) for that long once connected and uploads
//! the WAV to `POST /received`, which the server stores only when started with
//! `--save-received FILE` (the end-to-end test uses this).

mod agent;
mod peer;
mod ring;
mod server;
mod signal;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::agent::{Agent, AgentOptions, BoxError};
use crate::peer::PeerOptions;

const USAGE: &str = "\
usage: webrtc-agent [OPTIONS]

Serves a page that talks to the gst-interaction agent over WebRTC (one browser at a time).

options:
  --bind ADDR              address to listen on (default 127.0.0.1)
  --port PORT              port to listen on (default 8080; 0 picks a free one)
  --ice-address ADDR|any   local address for ICE host candidates (default 127.0.0.1;
                           `any`: every interface); may be given more than once
  --max-tokens N           reasoning sidecar answer length (default 24)
  --interaction-props P    extra interactionmodel properties, gst-launch syntax
                           (e.g. \"turn-detection=silence silence-ms=500\")
  --save-received FILE     store the page's recording (POST /received) in FILE
  --print-pipeline         print the agent pipeline description and exit
  -h, --help               this text
";

#[derive(Debug)]
struct Options {
    bind: IpAddr,
    port: u16,
    agent: AgentOptions,
    peer: PeerOptions,
    save_received: Option<PathBuf>,
    print_pipeline: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        bind: IpAddr::from([127, 0, 0, 1]),
        port: 8080,
        agent: AgentOptions::default(),
        peer: PeerOptions::default(),
        save_received: None,
        print_pipeline: false,
    };
    let mut ice_addresses: Option<Vec<String>> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value (see --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bind" => {
                let text = value("--bind")?;
                options.bind = text
                    .parse()
                    .map_err(|_| format!("--bind: `{text}` is not an IP address"))?;
            }
            "--port" => {
                let text = value("--port")?;
                options.port = text
                    .parse()
                    .map_err(|_| format!("--port: `{text}` is not a port number (0-65535)"))?;
            }
            "--ice-address" => {
                let text = value("--ice-address")?;
                let list = ice_addresses.get_or_insert_with(Vec::new);
                if text != "any" {
                    text.parse::<IpAddr>()
                        .map_err(|_| format!("--ice-address: `{text}` is not an IP address"))?;
                    list.push(text);
                }
            }
            "--max-tokens" => {
                let text = value("--max-tokens")?;
                options.agent.max_tokens =
                    text.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("--max-tokens: `{text}` is not a positive number")
                    })?;
            }
            "--interaction-props" => {
                options.agent.interaction_properties = value("--interaction-props")?;
            }
            "--save-received" => options.save_received = Some(value("--save-received")?.into()),
            "--print-pipeline" => options.print_pipeline = true,
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if let Some(list) = ice_addresses {
        options.peer.ice_addresses = list;
    }
    Ok(Some(options))
}

/// The GStreamer elements this program needs beyond ours, with the Debian package of each.
const NEEDED_ELEMENTS: &[(&str, &str)] = &[
    ("webrtcbin", "gstreamer1.0-plugins-bad"),
    ("nicesrc", "gstreamer1.0-nice"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("opusdec", "gstreamer1.0-plugins-base"),
    ("rtpopuspay", "gstreamer1.0-plugins-good"),
    ("rtpopusdepay", "gstreamer1.0-plugins-good"),
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
];

fn check_elements() -> Result<(), String> {
    let missing: Vec<String> = NEEDED_ELEMENTS
        .iter()
        .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
        .map(|(name, package)| format!("`{name}` (Debian: {package})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "GStreamer elements missing: {}. Install them (scripts/setup.sh does), then run \
             `gst-inspect-1.0 webrtcbin` to check.",
            missing.join(", ")
        ))
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("webrtc-agent: {message}");
            return ExitCode::from(2);
        }
    };
    if options.print_pipeline {
        println!("{}", agent::description(&options.agent));
        return ExitCode::SUCCESS;
    }
    match run(options) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("webrtc-agent: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> Result<ExitCode, BoxError> {
    gst::init().map_err(|e| format!("GStreamer did not initialise: {e}"))?;
    check_elements()?;
    agent::register_plugins().map_err(|e| format!("registering our plugins: {e}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve(options));
    // Do not wait for a model load that Ctrl-C interrupted; everything else has stopped.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

async fn serve(options: Options) -> Result<ExitCode, BoxError> {
    // Bind first: a port in use is reported before the long model load.
    let address = SocketAddr::new(options.bind, options.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "cannot listen on {address}: the port is in use (another webrtc-agent?); \
                 choose another with --port"
            ),
            _ => format!("cannot listen on {address}: {e}"),
        })?;
    let address = listener.local_addr()?;

    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let agent_options = options.agent.clone();
    let mut loading = tokio::task::spawn_blocking(move || {
        Agent::start(
            &agent_options,
            |text| eprintln!("webrtc-agent: {text}"),
            fatal_tx,
        )
        .map_err(|e| e.to_string())
    });
    let agent = tokio::select! {
        loaded = &mut loading => Arc::new(loaded??),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("webrtc-agent: interrupted while loading the models");
            // A model load cannot be cut short: the process exits without waiting for it.
            return Ok(ExitCode::from(130));
        }
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(server::AppState::new(
        agent.clone(),
        options.peer.clone(),
        options.save_received.clone(),
        shutdown_rx,
    ));
    let app = server::router(state);
    // The lines the end-to-end test waits for.
    println!("ready: open http://{address}/");
    let ice = if options.peer.ice_addresses.is_empty() {
        "every interface".to_owned()
    } else {
        options.peer.ice_addresses.join(", ")
    };
    eprintln!("webrtc-agent: ICE host candidates on {ice}; one peer at a time; Ctrl-C stops");

    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let failed = failure.clone();
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("webrtc-agent: Ctrl-C: shutting down"),
            error = fatal_rx.recv() => {
                let error = error.unwrap_or_else(|| "the agent stopped".into());
                eprintln!("webrtc-agent: {error}");
                if let Ok(mut slot) = failed.lock() {
                    *slot = Some(error);
                }
            }
        }
        let _ = shutdown_tx.send(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| format!("the server failed: {e}"))?;
    // Open sessions were told to close; each holds a reference to the agent until it has
    // stopped its peer pipeline. Then stop the agent.
    for _ in 0..100 {
        if Arc::strong_count(&agent) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let agent = Arc::into_inner(agent);
    tokio::task::spawn_blocking(move || drop(agent)).await?;
    eprintln!("webrtc-agent: stopped");
    let failed = failure.lock().map(|f| f.is_some()).unwrap_or(true);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let options = args(&[]).unwrap().unwrap();
        assert_eq!(options.port, 8080);
        assert_eq!(options.bind.to_string(), "127.0.0.1");
        assert_eq!(options.peer.ice_addresses, vec!["127.0.0.1".to_owned()]);
        assert_eq!(options.agent.max_tokens, 24);

        let options = args(&[
            "--port",
            "0",
            "--ice-address",
            "any",
            "--max-tokens",
            "12",
            "--save-received",
            "/tmp/x.wav",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(options.port, 0);
        assert!(options.peer.ice_addresses.is_empty());
        assert_eq!(options.agent.max_tokens, 12);
        assert_eq!(options.save_received, Some(PathBuf::from("/tmp/x.wav")));
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        assert_eq!(
            args(&["--port", "99999"]).unwrap_err(),
            "--port: `99999` is not a port number (0-65535)"
        );
        assert_eq!(
            args(&["--port"]).unwrap_err(),
            "--port needs a value (see --help)"
        );
        assert!(args(&["--ice-address", "localhost"]).is_err());
        assert!(args(&["--max-tokens", "0"]).is_err());
        assert_eq!(
            args(&["--frobnicate"]).unwrap_err(),
            "unknown argument `--frobnicate` (see --help)"
        );
    }
}
