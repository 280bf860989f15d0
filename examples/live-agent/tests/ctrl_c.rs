//! Runs the `live-agent` program with a file played at real-time pace as the microphone and a
//! synchronised fakesink as the speaker, waits for the agent's answer, sends SIGINT (Ctrl-C)
//! and checks that it exits 0 after a clean end of stream, having printed its devices and the
//! captions of both speakers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn ctrl_c_stops_cleanly_after_an_answer() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-agent");
    // A long silence after the question: the microphone must still be running at Ctrl-C.
    let (question, _) = agent_tests::spoken_wav(
        &dir,
        "question",
        "What is the capital of France?",
        0.5,
        60.0,
    )
    .expect("the question");
    let mic = format!(
        "filesrc location={} ! wavparse ! identity sync=true",
        question.to_str().unwrap()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_live-agent"))
        .args([
            "--mic",
            &mic,
            "--speaker",
            "fakesink sync=true",
            "--verbose",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start live-agent");
    let (lines, received) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let started = Instant::now();
    let mut output = Vec::new();
    // Until the agent's caption, or 30 s after the user's (the agent caption can come only at
    // the end: see tests/README.md).
    let mut deadline = started + Duration::from_secs(90);
    let mut heard = false;
    while Instant::now() < deadline && !output.iter().any(|l: &String| l.contains("agent: ")) {
        if !heard && output.iter().any(|l| l.contains("user: ")) {
            heard = true;
            deadline = Instant::now() + Duration::from_secs(30);
        }
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            eprintln!("live-agent: {line}");
            output.push(line);
        }
    }
    let answered = started.elapsed();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if stopping.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("live-agent did not stop within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stopped = stopping.elapsed();
    output.extend(received.try_iter());
    let log = log.join().unwrap_or_default();
    eprintln!("{}", log.join("\n"));
    assert!(exit.success(), "exit status {exit:?}");
    assert!(log.iter().any(|l| l == "stopped cleanly"), "{log:?}");
    let devices = output
        .iter()
        .find(|l| l.starts_with("devices: "))
        .unwrap_or_else(|| panic!("a devices line: {output:?}"));
    assert!(
        devices.contains("microphone filesrc (") && devices.contains("speaker fakesink"),
        "{devices}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.contains("user: ") && l.to_lowercase().contains("france")),
        "a user caption: {output:?}"
    );
    // The answer was spoken (--verbose prints the decisions), and its caption, when there,
    // holds it.
    assert!(
        log.iter().any(|l| l.starts_with("interaction/result-used")),
        "the answer was used: {log:?}"
    );
    if let Some(agent) = output.iter().find(|l| l.contains("agent: ")) {
        assert!(agent.to_lowercase().contains("paris"), "{agent}");
    }
    eprintln!(
        "answered {:.1} s after the start, stopped {:.2} s after SIGINT",
        answered.as_secs_f64(),
        stopped.as_secs_f64()
    );
}
