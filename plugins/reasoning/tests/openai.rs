//! The `openai` backend against a real OpenAI-compatible server process on loopback
//! (`openai-test-server`, which serves the same SmolLM2 GGUF), and its faults.

mod common;

use std::time::Duration;

use common::{Rig, TestServer, closed_port, package};
use gst::prelude::*;
use interaction_protocol::context::{ErrorKind, ReasoningResult};
use interaction_protocol::events::Yield;

const GENEROUS: Duration = Duration::from_secs(60);

fn openai_rig(base_url: &str, extra: &[(&str, &str)]) -> Rig {
    let mut properties = vec![
        ("backend", "openai"),
        ("base-url", base_url),
        ("api-key-env", "REASONING_TEST_KEY_THAT_IS_NOT_SET"),
    ];
    properties.extend_from_slice(extra);
    Rig::new(&properties)
}

/// The fault contract: one final result flagged with `kind`, a warning on the bus, no error,
/// and the pipeline keeps running (a second request is still answered, EOS still comes).
fn assert_fault(rig: &Rig, request_id: u64, kind: ErrorKind) -> Vec<ReasoningResult> {
    let results = rig.until_final(request_id, GENEROUS);
    let last = results.last().expect("a final result");
    assert_eq!(
        last.error.as_ref().map(|error| error.kind),
        Some(kind),
        "final result: {last:?}"
    );
    assert!(
        !last
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default()
            .is_empty()
    );
    // A live pipeline completes its move to PLAYING when the sink gets its first buffer,
    // which may be this very result: wait for the state change to settle.
    let (_, state, _) = rig.pipeline.state(gst::ClockTime::from_seconds(5));
    assert_eq!(state, gst::State::Playing, "the pipeline keeps running");
    let (warnings, errors) = rig.bus_messages();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per failed request: {warnings:?}"
    );
    assert!(errors.is_empty(), "no pipeline error: {errors:?}");
    results
}

#[test]
fn streams_partial_results_then_the_final_one() {
    let server = TestServer::start(&[]);
    let rig = openai_rig(&server.base_url, &[("max-tokens", "32")]);
    rig.push(&package(1, "What is the capital of France?"));
    let results = rig.until_final(1, GENEROUS);
    let (last, partials) = results.split_last().expect("results");
    assert!(last.error.is_none(), "{last:?}");
    assert!(last.text.contains("Paris"), "{:?}", last.text);
    assert!(
        partials.len() >= 2,
        "partials before the final: {results:?}"
    );
    assert!(partials.iter().all(|r| !r.is_final));
    assert_eq!(
        partials
            .iter()
            .map(|r| r.delta.as_str())
            .collect::<String>(),
        last.text
    );
    rig.finish(GENEROUS);
    assert!(
        server
            .wait_for_line("request 1: done after", GENEROUS)
            .is_some()
    );
}

#[test]
fn cancellation_mid_stream_closes_the_connection() {
    let server = TestServer::start(&["--token-delay-ms", "100"]);
    let rig = openai_rig(&server.base_url, &[("max-tokens", "200")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    rig.first_partial(1, GENEROUS);
    assert!(rig.appsrc.send_event(Yield::default().to_event()));
    let line = server
        .wait_for_line(
            "request 1: client closed the connection",
            Duration::from_secs(10),
        )
        .expect("the server saw the connection close");
    let chunks: usize = line
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("chunk count");
    assert!(chunks < 100, "traffic stopped early: {line}");
    assert!(
        server
            .wait_for_line("done after", Duration::from_millis(500))
            .is_none()
    );
    let rest = rig.finish(GENEROUS);
    assert!(rest.iter().all(|r| !r.is_final), "{rest:?}");
}

#[test]
fn newer_request_aborts_the_older_http_request() {
    let server = TestServer::start(&["--token-delay-ms", "100"]);
    let rig = openai_rig(&server.base_url, &[("max-tokens", "200")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    rig.first_partial(1, GENEROUS);
    rig.push(&package(2, "What is the capital of France?"));
    assert!(
        server
            .wait_for_line(
                "request 1: client closed the connection",
                Duration::from_secs(10)
            )
            .is_some()
    );
    let results = rig.until_final(2, GENEROUS);
    assert!(results.iter().all(|r| !(r.request_id == 1 && r.is_final)));
    assert!(results.last().is_some_and(|r| r.error.is_none()));
    rig.finish(GENEROUS);
}

#[test]
fn server_killed_mid_stream() {
    let mut server = TestServer::start(&["--token-delay-ms", "100"]);
    let rig = openai_rig(&server.base_url, &[("max-tokens", "200")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    rig.first_partial(1, GENEROUS);
    server.kill();
    let results = assert_fault(&rig, 1, ErrorKind::Disconnected);
    assert!(
        !results.last().expect("final").text.is_empty(),
        "keeps what arrived"
    );
    // The server is gone: the next request finds nobody listening, and still no error.
    rig.push(&package(2, "Are you there?"));
    assert_fault(&rig, 2, ErrorKind::Unreachable);
    rig.finish(GENEROUS);
}

#[test]
fn unreachable_port() {
    let base_url = format!("http://127.0.0.1:{}/v1", closed_port());
    let rig = openai_rig(&base_url, &[]);
    rig.push(&package(1, "Hello?"));
    assert_fault(&rig, 1, ErrorKind::Unreachable);
    rig.finish(GENEROUS);
}

#[test]
fn garbage_response() {
    let server = TestServer::start(&["--fault", "garbage"]);
    let rig = openai_rig(&server.base_url, &[]);
    rig.push(&package(1, "Hello?"));
    assert_fault(&rig, 1, ErrorKind::Protocol);
    rig.finish(GENEROUS);
}

#[test]
fn server_error_status() {
    let server = TestServer::start(&["--fault", "status-500"]);
    let rig = openai_rig(&server.base_url, &[]);
    rig.push(&package(1, "Hello?"));
    assert_fault(&rig, 1, ErrorKind::HttpStatus);
    rig.finish(GENEROUS);
}

#[test]
fn malformed_sse() {
    let server = TestServer::start(&["--fault", "malformed-sse"]);
    let rig = openai_rig(&server.base_url, &[("max-tokens", "32")]);
    rig.push(&package(1, "What is the capital of France?"));
    let results = assert_fault(&rig, 1, ErrorKind::Protocol);
    assert!(
        results.len() >= 2,
        "the good event before the bad one went out: {results:?}"
    );
    rig.finish(GENEROUS);
}

#[test]
fn slow_server_times_out_and_the_connection_is_closed() {
    let server = TestServer::start(&["--fault", "hang"]);
    let rig = openai_rig(&server.base_url, &[("timeout", "800")]);
    rig.push(&package(1, "Hello?"));
    assert_fault(&rig, 1, ErrorKind::Timeout);
    assert!(
        server
            .wait_for_line(
                "request 1: client closed the connection",
                Duration::from_secs(5)
            )
            .is_some(),
        "the timed-out request was aborted"
    );
    rig.finish(GENEROUS);
}
