//! End to end through a real browser: `webrtc-agent` serves its page, headless Chromium (from
//! Debian) opens it with a file-backed fake microphone that asks "What is the capital of
//! France?" (espeak-ng), and the page records what it sent (left) and what it received from the
//! agent (right) and uploads it. The test asserts on that recording: the question went out, the
//! agent's speech came back after it (energy envelope), and Whisper hears words in it; the
//! server logged the user's caption and used the reasoning answer. While the browser is
//! connected, a second WebSocket is refused (one peer at a time). Then Ctrl-C (SIGINT) must
//! stop the server cleanly.
//!
//! About 30 s on 2 cores: 3-5 s of model loading, 22 s of conversation, Whisper.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_webrtc-agent");
const RATE: u32 = 16_000;
/// What the page records once connected.
const RECORD_S: u32 = 22;
/// Silence before the question in the fake microphone's file.
const LEAD_S: f64 = 0.5;
/// 20 ms analysis frames.
const FRAME: usize = 320;
/// A frame is sound when its RMS is above this (dBFS); the silences are digital zero.
const SOUND_DBFS: f64 = -40.0;

/// Kills (and reaps) a child process when the test ends, however it ends.
struct Reaped(Option<Child>);

impl Reaped {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The fake microphone's file: 0.5 s of silence, the question, 20 s of silence (16-bit, as
/// espeak-ng writes it). Returns the question's length in seconds.
fn question_wav(dir: &Path) -> (PathBuf, f64) {
    let spoken = dir.join("question-espeak.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "160", "-w"])
        .arg(&spoken)
        .arg("What is the capital of France?")
        .status()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(status.success());
    let mut reader = hound::WavReader::open(&spoken).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    let speech: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let rate = f64::from(spec.sample_rate);
    let path = dir.join("microphone.wav");
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for _ in 0..(LEAD_S * rate) as usize {
        writer.write_sample(0i16).unwrap();
    }
    for &s in &speech {
        writer.write_sample(s).unwrap();
    }
    for _ in 0..(20.0 * rate) as usize {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    (path, speech.len() as f64 / rate)
}

/// Per 20 ms frame: is there sound?
fn sound_frames(samples: &[f32]) -> Vec<bool> {
    samples
        .chunks(FRAME)
        .map(|frame| {
            let power =
                frame.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / frame.len() as f64;
            10.0 * power.max(1e-12).log10() > SOUND_DBFS
        })
        .collect()
}

fn frame_s(index: usize) -> f64 {
    (index * FRAME) as f64 / f64::from(RATE)
}

/// Opens the signalling WebSocket by hand and returns what the server sends before closing
/// (the HTTP status line and the first frame's payload).
fn second_peer(address: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let status = String::from_utf8_lossy(&bytes[..split])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    // One unmasked text frame with a payload under 126 bytes: 0x81, length, payload.
    let frame = &bytes[split + 4..];
    assert!(frame.len() >= 2 && frame[0] == 0x81, "{frame:?}");
    let length = usize::from(frame[1]);
    (
        status,
        String::from_utf8_lossy(&frame[2..2 + length]).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_browser_asks_and_hears_the_agent_answer() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webrtc-agent-browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (microphone, question_s) = question_wav(&dir);
    let received = dir.join("received.wav");
    let started = Instant::now();

    // The server, on a free port; its stdout lines come through a channel.
    let mut server = Reaped(Some(
        Command::new(BIN)
            .args(["--port", &free_port().to_string(), "--save-received"])
            .arg(&received)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = server.child().stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // What the server wrote to stderr so far.
    let stderr_text: Arc<Mutex<String>> = Arc::default();
    let stderr = server.child().stderr.take().unwrap();
    let stderr_sink = stderr_text.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut text = stderr_sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let server_stderr = || stderr_text.lock().unwrap().clone();
    let mut stdout_lines = Vec::new();
    let url = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| {
                let _ = server.child().kill();
                panic!("the server did not get ready:\n{}", server_stderr())
            });
        stdout_lines.push(line.clone());
        if let Some(url) = line.strip_prefix("ready: open ") {
            break url.to_owned();
        }
    };
    let loaded_s = started.elapsed().as_secs_f64();

    // Headless Chromium: fake microphone from the file (played once), loopback ICE candidates
    // with their real addresses, no network.
    let profile = dir.join("chromium-profile");
    let browser = Reaped(Some(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}%noloop",
                microphone.display()
            ))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("{url}?autostart=1&record={RECORD_S}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium runs (Debian package `chromium`; scripts/setup.sh installs it)"),
    ));

    // One peer at a time: a second page is told so while the browser's session is open.
    let connected = Instant::now() + Duration::from_secs(30);
    while !server_stderr().contains("peer connected") {
        assert!(Instant::now() < connected, "no peer:\n{}", server_stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (status, frame) = second_peer(&address);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(
        frame,
        r#"{"type":"error","message":"another page is connected: this server talks to one peer at a time"}"#
    );

    // The page uploads its recording when it has RECORD_S seconds.
    let deadline = Instant::now() + Duration::from_secs(u64::from(RECORD_S) + 45);
    while !received.exists() {
        while let Ok(line) = lines.try_recv() {
            stdout_lines.push(line);
        }
        if Instant::now() > deadline {
            let _ = server.child().kill();
            panic!(
                "no recording uploaded within {} s; server stdout:\n{}\nstderr:\n{}",
                RECORD_S + 45,
                stdout_lines.join("\n"),
                server_stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The reasoning answer may still be on its way on a loaded machine (SmolLM2 took up to
    // 10 s here): give it a little longer, with the browser still connected.
    let answer_deadline = Instant::now() + Duration::from_secs(20);
    while !stdout_lines.iter().any(|l| l.contains("result-used"))
        && Instant::now() < answer_deadline
    {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            stdout_lines.push(line);
        }
    }
    drop(browser);

    // Ctrl-C: the server closes the session, stops both pipelines and exits with 0.
    let pid = server.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < stop_deadline,
            "no exit within 20 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        stdout_lines.push(line);
    }
    let _ = stderr_reader.join();
    let stderr = server_stderr();
    let stdout = stdout_lines.join("\n");
    assert!(
        status.success(),
        "exit {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("Ctrl-C: shutting down"), "{stderr}");
    assert!(stderr.contains("webrtc-agent: stopped"), "{stderr}");
    assert!(
        stderr.contains("peer connection-state: connected"),
        "{stderr}"
    );

    // The recording: 16 kHz stereo, RECORD_S long.
    let mut reader = hound::WavReader::open(&received).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, RATE));
    let interleaved: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    assert_eq!(interleaved.len(), 2 * (RECORD_S * RATE) as usize);
    let sent: Vec<f32> = interleaved.iter().step_by(2).copied().collect();
    let heard: Vec<f32> = interleaved.iter().skip(1).step_by(2).copied().collect();

    // The question went out: one stretch of sound about as long as espeak-ng's.
    let sent_frames = sound_frames(&sent);
    let first = sent_frames
        .iter()
        .position(|&s| s)
        .expect("no question in the sent audio");
    let last = sent_frames.iter().rposition(|&s| s).unwrap();
    let (question_start, question_end) = (frame_s(first), frame_s(last + 1));
    assert!(
        (question_end - question_start - question_s).abs() < 0.4,
        "sent sound {question_start:.2}-{question_end:.2} s, the question is {question_s:.2} s"
    );

    // The agent's speech came back after it.
    let heard_frames = sound_frames(&heard);
    let before = heard_frames[..last + 1].iter().filter(|&&s| s).count();
    let after: Vec<usize> = (last + 1..heard_frames.len())
        .filter(|&i| heard_frames[i])
        .collect();
    let answer_s = frame_s(after.len());
    let onset = after.first().map(|&i| frame_s(i));
    eprintln!(
        "models loaded after {loaded_s:.1} s; question {question_start:.2}-{question_end:.2} s; \
         agent sound before its end {:.2} s, after it {answer_s:.2} s, first at {onset:?} s",
        frame_s(before)
    );
    assert!(
        answer_s > 0.3,
        "only {answer_s:.2} s of agent audio after the question\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        frame_s(before) < 0.3,
        "{:.2} s of agent audio while the user asked",
        frame_s(before)
    );

    // It is speech: Whisper hears words in it.
    let mut whisper = interaction_asr::Whisper::load(interaction_asr::default_model_dir())
        .expect("Whisper tiny.en in the model cache (scripts/setup.sh)");
    let answer_audio = &heard[(last + 1) * FRAME..];
    let transcript = whisper.transcribe(answer_audio).unwrap().text;
    let words = interaction_asr::wer::normalize_words(&transcript);
    eprintln!("the agent said: {transcript:?}");
    assert!(words.len() >= 2, "agent transcript {transcript:?}");

    // The server saw the same conversation: a user caption, an ended turn, and the reasoning
    // answer used (spoken after the filler).
    assert!(stdout.contains("caption: user: "), "{stdout}");
    assert!(stdout.contains("user-turn-ended"), "{stdout}");
    assert!(stdout.contains("result-used"), "{stdout}");
    assert!(stdout.contains("received: "), "{stdout}");
    eprintln!(
        "server stdout:\n{stdout}\ntotal {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_port_in_use_and_missing_elements_are_clear_errors_before_any_model_loads() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let output = Command::new(BIN).args(["--port", &port]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: the port is in use"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("loading the models"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Without GStreamer's system plugins, the missing elements are named with their package.
    let registry = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webrtc-agent-empty-registry.bin");
    let output = Command::new(BIN)
        .args(["--port", "0"])
        .env("GST_PLUGIN_SYSTEM_PATH_1_0", "/nonexistent")
        .env("GST_PLUGIN_SYSTEM_PATH", "/nonexistent")
        .env("GST_PLUGIN_PATH", "/nonexistent")
        .env("GST_REGISTRY", &registry)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&registry);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("GStreamer elements missing: `webrtcbin` (Debian: gstreamer1.0-plugins-bad), `nicesrc` (Debian: gstreamer1.0-nice)"),
        "{stderr}"
    );

    let output = Command::new(BIN).args(["--port", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--port: `x` is not a port number"));
}
