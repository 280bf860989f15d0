//! The embedding example as a user runs it: a chat line on standard input is answered (the
//! reasoning request says it came from text, the answer is used and spoken), and the end of
//! input ends the program with exit code 0.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_chat_line_is_answered_and_end_of_input_ends_the_program() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_embed-agent"))
        .args([
            "--source",
            "audiotestsrc is-live=true wave=silence samplesperbuffer=320",
            "--sink",
            "fakesink sync=true",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example runs");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // Let the models load and the pipeline play before typing.
        std::thread::sleep(Duration::from_secs(8));
        let _ = writeln!(stdin, "What is the capital of France?");
        // Time for the answer, then end of input.
        std::thread::sleep(Duration::from_secs(25));
        drop(stdin);
    });
    let started = Instant::now();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    // The program bounds its own drain after the end of input; this bounds the test even if it
    // does not.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    writer.join().unwrap();
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let status = status.unwrap_or_else(|| {
        panic!("embed-agent still ran after 120 s, killed:\n{stdout}\n{stderr}")
    });
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(90));
    for decision in [
        "decision reasoning-requested",
        "decision result-used",
        "decision agent-started-speaking",
    ] {
        assert!(stdout.contains(decision), "no `{decision}` in:\n{stdout}");
    }
    // The typed line is in the conversation: the interaction model captions it.
    assert!(
        stdout.contains("What is the capital of France?"),
        "{stdout}"
    );
}

/// Reads a child's output to the end on a thread of its own.
fn drain(mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}
