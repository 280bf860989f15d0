//! The native kind with the contract model (models/interaction-native/build.py, installed by
//! scripts/setup.sh): state carried across steps and reset by a flush, and the same decisions
//! and events as the cascade on real speech.

mod common;

use common::*;
use gstinteraction::device::{CPU_PROVIDER, Device, Provider};
use gstinteraction::engine::Engine;
use gstinteraction::native::Native;
use interaction_protocol::events::messages;

fn native_package() -> std::path::PathBuf {
    gstinteraction::package::source_packages_dir().join("native-contract")
}

fn open() -> Native {
    init();
    let package = gstinteraction::package::load(&native_package())
        .expect("the native-contract package (run scripts/setup.sh to build its model)");
    let provider = Provider {
        name: CPU_PROVIDER,
        device: Device::Cpu,
        fallback_reason: None,
    };
    Native::open(
        package.file("model").unwrap(),
        &provider,
        &package.action_labels,
    )
    .expect("the contract model opens")
}

#[test]
fn state_persists_across_steps_and_a_flush_resets_it() {
    let mut native = open();
    assert_eq!(
        native.frontend().dmel.hop,
        200,
        "front end from the ONNX metadata"
    );
    assert_eq!(native.frontend().patch, 40);
    let voiced = vec![8u8; 16 * 80];
    let patches = vec![0.25f32; 2 * 40 * 40 * 3];
    let bytes: Vec<i64> = b"hi".iter().map(|b| i64::from(*b)).collect();
    let first = native.run(&voiced, &patches, &bytes, [0.0, 0.0]).unwrap();
    let h1 = native.state("h").unwrap();
    let second = native.run(&voiced, &patches, &bytes, [0.0, 0.0]).unwrap();
    let h2 = native.state("h").unwrap();
    native.run(&voiced, &patches, &bytes, [0.0, 0.0]).unwrap();
    // [speech run, silence run, had speech, steps]
    assert_eq!(native.state("turn").unwrap(), vec![3.0, 0.0, 1.0, 3.0]);
    assert_ne!(
        h1, h2,
        "the recurrent state carries over: same input, new state"
    );
    assert!(h1.iter().any(|v| *v != 0.0));
    assert_eq!(first.0, second.0, "the rule-based scores are the same");
    assert_eq!(first.1, b"hi", "text bytes come back");

    native.reset();
    assert!(native.state("turn").unwrap().iter().all(|v| *v == 0.0));
    assert!(native.state("h").unwrap().iter().all(|v| *v == 0.0));
    let again = native.run(&voiced, &patches, &bytes, [0.0, 0.0]).unwrap();
    assert_eq!(again, first, "after a flush the model behaves as new");
    assert_eq!(native.state("h").unwrap(), h1);
    assert_eq!(native.state("turn").unwrap(), vec![1.0, 0.0, 1.0, 1.0]);
    // Silence after speech: three quiet steps trigger reasoning once.
    let quiet = vec![0u8; 16 * 80];
    let triggers: Vec<f32> = (0..5)
        .map(|_| native.run(&quiet, &[], &[], [0.0, 0.0]).unwrap().2)
        .collect();
    assert_eq!(triggers, vec![0.0, 0.0, 1.0, 0.0, 0.0]);
    // The user speaking over the agent for two steps: yield wins.
    native.run(&voiced, &[], &[], [1.0, 0.0]).unwrap();
    let (scores, ..) = native.run(&voiced, &[], &[], [1.0, 0.0]).unwrap();
    assert_eq!(scores, vec![0.5, 0.0, 0.0, 1.0]);
}

#[test]
fn native_outputs_drive_the_same_decisions_and_events_as_the_cascade() {
    const ANSWER: &str = "It is sunny in Paris with a light breeze from the west and no rain \
        is expected before the evening according to the forecast.";
    let asked = Script::default()
        .silence(400)
        .say("What is the weather like in Paris today?")
        .silence(1200);
    let answer_turn = (asked.now() / TURN_NS) as usize;
    let script = asked
        .silence(1000)
        .say("Hold on I have another question about the trains")
        .silence(1500)
        .whole_turns();
    let element = element(&[
        ("model", native_package().to_str().unwrap()),
        ("filler-ms", "0"),
    ]);
    let run = run_element(
        &element,
        packets(
            &[("audio", &script.audio)],
            &[result_item(answer_turn, 1, ANSWER)],
        ),
    );
    let (_, _, question_end) = script.spoken[0];
    let ends = run.messages(messages::USER_TURN_ENDED);
    assert!(!ends.is_empty());
    let first_end = running_time(ends[0]);
    assert!(
        first_end > question_end && first_end <= question_end + 1000 * MS,
        "the model ends the turn {} ms after the question",
        (first_end - question_end) / MS
    );
    assert_eq!(ends[0].get::<String>("reason").unwrap(), "native");
    let contexts = run.contexts();
    assert!(!contexts.is_empty());
    assert_eq!(contexts[0].request_id, 1);
    assert_eq!(
        run.messages(messages::REASONING_REQUESTED).len(),
        contexts.len()
    );
    // The result is spoken with a speak event, then the user's interruption yields it.
    let speak = run
        .speech
        .iter()
        .position(|o| matches!(o, Out::Speak(1)))
        .expect("speak");
    assert!(matches!(&run.speech[speak + 1], Out::Text { text, .. } if text == ANSWER));
    assert_eq!(run.messages(messages::RESULT_USED).len(), 1);
    let yielded = run
        .speech
        .iter()
        .position(|o| matches!(o, Out::Yield(Some(1))))
        .expect("yield");
    assert!(yielded > speak);
    let (_, onset, _) = script.spoken[1];
    let barge = running_time(run.messages(messages::BARGE_IN)[0]);
    assert!(
        barge >= onset && barge <= onset + 3 * TURN_NS,
        "yield {} ms after the interruption began",
        (barge - onset) / MS
    );
    // The interrupted answer is in the record as heard.
    let last = contexts.last().unwrap();
    let agent = last
        .conversation
        .iter()
        .find(|t| t.speaker == "agent")
        .expect("agent turn in the record");
    assert!(agent.truncation.is_some());
}
