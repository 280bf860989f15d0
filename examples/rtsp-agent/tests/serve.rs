//! Runs the `rtsp-agent` program with basic authentication on free loopback ports, plays a
//! spoken question into it as RTP (Opus over UDP), pulls the agent's stream back with `rtspsrc`
//! and checks that the received audio holds the agent's answer and the captions stream the
//! question's transcript; wrong credentials are refused; SIGINT stops the server with status 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// Kills the server if the test fails half-way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

#[test]
fn serves_the_agents_answer_to_an_authenticated_client() {
    agent_tests::init();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rtsp-agent");
    let (question, question_end) = agent_tests::spoken_wav(
        &dir,
        "question",
        "What is the capital of France?",
        0.5,
        15.0,
    )
    .expect("the question");
    let rtsp_port = free_tcp_port();
    let rtp_port = free_udp_port();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_rtsp-agent"))
            .args([
                "--input",
                &format!("rtp://127.0.0.1:{rtp_port}"),
                "--port",
                &rtsp_port.to_string(),
                "--auth",
                "listener:s3cret",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rtsp-agent"),
    );
    let (lines, received) = mpsc::channel::<String>();
    let stdout = server.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("rtsp-agent: {line}");
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/agent");
    let started = Instant::now();
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(120))
            .expect("the server starts within 120 s");
        if line.starts_with("serving ") {
            assert!(line.contains(&url), "{line}");
            break;
        }
    }
    eprintln!("serving after {:.1} s", started.elapsed().as_secs_f64());

    // Wrong credentials, and none: refused.
    for credentials in ["user-id=listener user-pw=wrong", ""] {
        let refused = parse(&format!(
            "rtspsrc location={url} {credentials} protocols=tcp ! fakesink"
        ));
        let error = agent_tests::run(&refused, Duration::from_secs(20), None)
            .expect_err("refused without the right credentials");
        assert!(
            error.contains("Unauthorized") || error.contains("401"),
            "{credentials:?}: {error}"
        );
    }

    // The listener: the agent's voice into a WAV, the captions collected.
    let wav = dir.join("received.wav");
    let listener = parse(&format!(
        "rtspsrc name=src location={url} user-id=listener user-pw=s3cret protocols=tcp latency=200 \
         src. ! rtpopusdepay ! opusdec ! audioconvert ! audioresample \
           ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! wavenc \
           ! filesink location={} \
         src. ! rtpgstdepay ! fakesink name=captions",
        wav.to_str().unwrap()
    ));
    let captions: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let captions = captions.clone();
        listener
            .by_name("captions")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer()
                    && let Ok(map) = buffer.map_readable()
                    && !map.is_empty()
                {
                    captions
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(map.as_slice()).into_owned());
                }
                gst::PadProbeReturn::Ok
            });
    }
    let talk_seconds = question_end + 15.0;
    let listening = {
        let listener = listener.clone();
        std::thread::spawn(move || {
            agent_tests::run(
                &listener,
                Duration::from_secs(60),
                Some(Duration::from_secs_f64(talk_seconds + 3.0)),
            )
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    // The user: the question as Opus over RTP, at real-time pace.
    let user = parse(&format!(
        "filesrc location={} ! wavparse ! identity sync=true ! audioconvert ! audioresample \
         ! opusenc ! rtpopuspay pt=96 ! udpsink host=127.0.0.1 port={rtp_port}",
        question.to_str().unwrap()
    ));
    agent_tests::run(&user, Duration::from_secs(60), None).expect("the user speaks");
    let outcome = listening.join().expect("listener thread");
    outcome.expect("the listener runs to EOS");

    let captions = captions.lock().unwrap().clone();
    eprintln!("captions received: {captions:?}");
    assert!(
        captions
            .iter()
            .any(|c| c.starts_with("user: ") && c.to_lowercase().contains("france")),
        "{captions:?}"
    );
    let (rate, samples) = agent_tests::read_wav(&wav).expect("the received audio");
    let length = samples.len() as f64 / f64::from(rate);
    let voiced = agent_tests::voiced_seconds(&samples, rate, 0.0);
    eprintln!("received {length:.1} s of audio, {voiced:.2} s of it the agent's voice");
    assert!(length > talk_seconds - 2.0, "received {length:.1} s");
    assert!(voiced > 0.5, "{voiced:.2} s of the agent's voice");

    // Ctrl-C: the server stops with status 0.
    let status = Command::new("kill")
        .args(["-INT", &server.0.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = server.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(20),
            "rtsp-agent did not stop within 20 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
