//! The sidecar inside a feedback loop, with the real elements available today.
//!
//! The loop of DESIGN §2 (`microturnmux → interactionmodel → reasoningsidecar → microturnmux`)
//! needs elements that do not exist yet. Here the loop closes through the application, the way
//! the interaction model will close it: every final result becomes the agent's turn in the next
//! context package, pushed back into the sidecar's input. The pipeline has to reach EOS, answer
//! a latency query without it ever reaching the sidecar's input side, and shut down without
//! deadlock while a request is running.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Out, Rig, init, package};
use gst::prelude::*;
use interaction_protocol::context::{ContextPackage, ReasoningResult, Role, Turn};

const GENEROUS: Duration = Duration::from_secs(90);
const QUESTIONS: [&str; 3] = [
    "What is the capital of France?",
    "And what is the capital of Italy?",
    "Thank you. Say goodbye.",
];

/// Counts latency queries that reach the pad upstream of the sidecar.
fn count_latency_queries(pad: &gst::Pad) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    pad.add_probe(gst::PadProbeType::QUERY_UPSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Query(query)) = &info.data
            && query.type_() == gst::QueryType::Latency
        {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    count
}

#[test]
fn conversation_loop_reaches_eos_and_answers_latency() {
    let rig = Rig::new(&[("max-tokens", "24")]);
    let upstream_queries =
        count_latency_queries(&rig.appsrc.static_pad("src").expect("appsrc has a src pad"));
    let mut conversation: Vec<Turn> = Vec::new();
    let mut finals: Vec<ReasoningResult> = Vec::new();
    for (round, question) in QUESTIONS.iter().enumerate() {
        let request_id = round as u64 + 1;
        conversation.push(Turn {
            speaker: "user".into(),
            role: Role::User,
            start_ns: request_id * 10_000_000_000,
            end_ns: Some(request_id * 10_000_000_000 + 1_000_000_000),
            text: (*question).into(),
            truncation: None,
        });
        let mut package: ContextPackage = package(request_id, question);
        package.conversation = conversation.clone();
        rig.push(&package);

        // While a request runs, the pipeline's latency query returns at once. The appsink
        // (sync=false) reports itself not live; what it asked upstream, the sidecar's src pad
        // answered as a live source, without going further.
        let mut query = gst::query::Latency::new();
        let asked = Instant::now();
        assert!(
            rig.pipeline.query(&mut query),
            "the latency query is answered"
        );
        assert!(asked.elapsed() < Duration::from_secs(1));
        let sink_pad = rig
            .sidecar
            .static_pad("src")
            .and_then(|pad| pad.peer())
            .expect("the sidecar is linked");
        let mut query = gst::query::Latency::new();
        assert!(sink_pad.peer_query(&mut query));
        let (live, min, max) = query.result();
        assert!(live, "the sidecar is a live source");
        assert_eq!((min, max), (gst::ClockTime::ZERO, None));

        let results = rig.until_final(request_id, GENEROUS);
        let last = results.last().expect("final").clone();
        assert!(last.error.is_none(), "{last:?}");
        // The answer goes back in as what the agent said.
        conversation.push(Turn {
            speaker: "agent".into(),
            role: Role::Agent,
            start_ns: request_id * 10_000_000_000 + 2_000_000_000,
            end_ns: Some(request_id * 10_000_000_000 + 4_000_000_000),
            text: last.text.clone(),
            truncation: None,
        });
        finals.push(last);
    }
    assert!(finals[0].text.contains("Paris"), "{:?}", finals[0].text);
    assert_eq!(finals.len(), QUESTIONS.len());
    let rest = rig.finish(GENEROUS);
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        upstream_queries.load(Ordering::SeqCst),
        0,
        "no latency query went through the sidecar to its input"
    );
    let (warnings, errors) = rig.bus_messages();
    assert!(
        warnings.is_empty() && errors.is_empty(),
        "{warnings:?} {errors:?}"
    );
}

#[test]
fn shutdown_mid_request_does_not_deadlock() {
    let rig = Rig::new(&[("max-tokens", "400")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    rig.first_partial(1, GENEROUS);
    let stopping = Instant::now();
    rig.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopping took {:?}",
        stopping.elapsed()
    );
    // And it starts again, with the model carried over.
    rig.pipeline
        .set_state(gst::State::Playing)
        .expect("restarts");
    rig.push(&package(2, "What is the capital of France?"));
    let results = rig.until_final(2, GENEROUS);
    assert!(results.last().is_some_and(|r| r.text.contains("Paris")));
    rig.finish(GENEROUS);
}

#[test]
fn eos_with_nothing_in_flight_passes_at_once() {
    init();
    let rig = Rig::new(&[]);
    let sent = Instant::now();
    let rest = rig.finish(Duration::from_secs(10));
    assert!(rest.is_empty());
    assert!(sent.elapsed() < Duration::from_secs(2));
    let got: Vec<Out> = std::iter::from_fn(|| rig.next(Duration::from_millis(50))).collect();
    assert!(got.is_empty(), "{got:?}");
}
