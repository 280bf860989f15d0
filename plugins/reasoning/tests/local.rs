//! The element with its local backend (SmolLM2-135M GGUF through llama.cpp, and candle), in
//! real pipelines.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Out, Rig, init, package};
use gst::prelude::*;
use interaction_protocol::context::{ErrorKind, ReasoningResult};
use interaction_protocol::events::Yield;

const GENEROUS: Duration = Duration::from_secs(60);

/// Partial results come first, each adding its delta to the text; one final result ends.
fn assert_well_formed(results: &[ReasoningResult], request_id: u64) {
    let mine: Vec<_> = results
        .iter()
        .filter(|r| r.request_id == request_id)
        .collect();
    let (last, partials) = mine.split_last().expect("at least the final result");
    assert!(last.is_final, "the last result is final: {last:?}");
    assert!(
        partials.iter().all(|r| !r.is_final),
        "one final result only"
    );
    let mut text = String::new();
    for (seq, result) in mine.iter().enumerate() {
        assert_eq!(result.seq as usize, seq, "results are numbered in order");
        text.push_str(&result.delta);
        assert_eq!(result.text, text, "text is the sum of the deltas");
    }
}

#[test]
fn local_backend_answers_paris() {
    let rig = Rig::new(&[("max-tokens", "32")]);
    rig.push(&package(1, "What is the capital of France?"));
    let results = rig.until_final(1, GENEROUS);
    assert_well_formed(&results, 1);
    let last = results.last().expect("a final result");
    assert!(last.error.is_none(), "no error: {last:?}");
    assert!(
        last.text.contains("Paris"),
        "the answer names Paris: {:?}",
        last.text
    );
    assert!(
        results.len() >= 3,
        "the answer streams in several partial results before the final one: {results:?}"
    );
    let rest = rig.finish(GENEROUS);
    assert!(rest.is_empty(), "nothing after the final result: {rest:?}");
    let (warnings, errors) = rig.bus_messages();
    assert!(
        warnings.is_empty() && errors.is_empty(),
        "{warnings:?} {errors:?}"
    );
}

#[test]
fn candle_runtime_answers_too() {
    let rig = Rig::new(&[("max-tokens", "16"), ("local-runtime", "candle")]);
    rig.push(&package(1, "What is the capital of France?"));
    let results = rig.until_final(1, GENEROUS);
    assert_well_formed(&results, 1);
    let last = results.last().expect("a final result");
    assert!(last.error.is_none(), "no error: {last:?}");
    assert!(last.text.contains("Paris"), "{:?}", last.text);
    rig.finish(GENEROUS);
}

/// Starts a sidecar on `model`, expects the state change to fail; gives the error's text.
fn start_error(model: &std::path::Path, runtime: &str) -> String {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc caps=application/x-interaction-context ! \
         reasoningsidecar local-runtime={runtime} model-path=\"{}\" ! fakesink",
        model.display()
    ))
    .expect("parses");
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let bus = pipeline.bus().expect("bus");
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    pipeline.set_state(gst::State::Null).expect("stops");
    error.error().to_string()
}

#[test]
fn truncated_model_fails_at_start_with_a_clear_message() {
    let model = interaction_runtime::model_file(gstreasoning::local::DEFAULT_MODEL)
        .expect("run scripts/setup.sh");
    let bytes = std::fs::read(&model).expect("reads the GGUF");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("truncated-gguf");
    std::fs::create_dir_all(&dir).unwrap();
    // Cut in the header (the vocabulary) and in the tensor data.
    for (name, keep) in [("header", 64 * 1024), ("tensors", bytes.len() / 2)] {
        let path = dir.join(format!("cut-in-{name}.gguf"));
        std::fs::write(&path, &bytes[..keep]).unwrap();
        for runtime in ["llama-cpp", "candle"] {
            let message = start_error(&path, runtime);
            assert!(
                message.contains(&path.display().to_string()),
                "{runtime}, cut in the {name}: the error names the file: {message}"
            );
            assert!(
                message.contains("cannot read the GGUF model"),
                "{runtime}, cut in the {name}: {message}"
            );
        }
    }
}

#[test]
fn newer_request_supersedes_the_older_one() {
    let rig = Rig::new(&[("max-tokens", "200")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    rig.first_partial(1, GENEROUS);
    rig.push(&package(2, "What is the capital of France?"));
    let results = rig.until_final(2, GENEROUS);
    let rest = rig.finish(GENEROUS);
    let all: Vec<_> = results.iter().chain(&rest).collect();
    assert!(
        all.iter().all(|r| !(r.request_id == 1 && r.is_final)),
        "the superseded request gets no final result: {all:?}"
    );
    let first_of_2 = all
        .iter()
        .position(|r| r.request_id == 2)
        .expect("request 2 answered");
    assert!(
        all[first_of_2..].iter().all(|r| r.request_id == 2),
        "nothing of request 1 after request 2 started: {all:?}"
    );
    assert!(results.last().is_some_and(|r| r.text.contains("Paris")));
}

#[test]
fn stale_request_is_ignored() {
    let rig = Rig::new(&[("max-tokens", "8")]);
    rig.push(&package(5, "Say hello."));
    rig.push(&package(3, "Say goodbye."));
    let results = rig.finish(GENEROUS);
    assert!(results.iter().all(|r| r.request_id == 5), "{results:?}");
    assert!(results.last().is_some_and(|r| r.is_final));
}

#[test]
fn yield_cancels_generation() {
    let rig = Rig::new(&[("max-tokens", "300")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    rig.first_partial(1, GENEROUS);
    let yielded = Instant::now();
    assert!(rig.appsrc.send_event(Yield::default().to_event()));
    // EOS waits for the requests in flight: it comes quickly only if generation stopped.
    let rest = rig.finish(GENEROUS);
    let waited = yielded.elapsed();
    assert!(
        rest.iter().all(|r| !r.is_final),
        "a yielded request gets no final result: {rest:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "EOS came {waited:?} after the yield: generation did not stop"
    );
}

#[test]
fn timeout_gives_an_error_result() {
    let rig = Rig::new(&[("max-tokens", "400"), ("timeout", "300")]);
    rig.push(&package(
        1,
        "Write a long story about a dragon who learns to cook.",
    ));
    let results = rig.until_final(1, GENEROUS);
    let last = results.last().expect("final");
    assert_eq!(
        last.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Timeout)
    );
    rig.finish(GENEROUS);
    let (warnings, errors) = rig.bus_messages();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn unreadable_package_gives_an_error_result_and_the_stream_goes_on() {
    let rig = Rig::new(&[("max-tokens", "16")]);
    rig.push_bytes(br#"{"version":1,"request_id":4,"trigger":"oops"}"#.to_vec());
    rig.push_bytes(b"\xff\xfe not json".to_vec());
    rig.push(&package(6, "What is the capital of France?"));
    let results = rig.until_final(6, GENEROUS);
    let errors: Vec<_> = results.iter().filter(|r| r.is_error()).collect();
    assert_eq!(errors.len(), 2, "{results:?}");
    assert_eq!(
        errors[0].request_id, 4,
        "the id is read leniently when present"
    );
    assert_eq!(errors[1].request_id, 0);
    assert!(
        errors
            .iter()
            .all(|r| r.is_final && r.error.as_ref().map(|e| e.kind) == Some(ErrorKind::BadRequest))
    );
    assert!(results.last().is_some_and(|r| r.text.contains("Paris")));
    rig.finish(GENEROUS);
    let (warnings, errors) = rig.bus_messages();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn results_are_stamped_with_running_time() {
    let rig = Rig::new(&[("max-tokens", "8")]);
    rig.push(&package(1, "Say hello."));
    let mut stamps = Vec::new();
    loop {
        match rig.next(GENEROUS) {
            Some(Out::Result(result, pts)) => {
                stamps.push(pts.expect("every result has a PTS"));
                if result.is_final {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        stamps.windows(2).all(|pair| pair[0] <= pair[1]),
        "{stamps:?}"
    );
    let now = rig.pipeline.current_running_time().expect("playing");
    assert!(
        stamps.iter().all(|stamp| *stamp <= now),
        "{stamps:?} vs {now}"
    );
}

#[test]
fn missing_model_fails_at_start_with_a_clear_message() {
    for runtime in ["llama-cpp", "candle"] {
        let message = start_error(std::path::Path::new("/nonexistent/model.gguf"), runtime);
        assert!(
            message.contains("/nonexistent/model.gguf"),
            "{runtime}: {message}"
        );
    }
}

#[test]
fn properties_round_trip_and_the_key_is_not_a_property() {
    init();
    let sidecar = gst::ElementFactory::make("reasoningsidecar")
        .property_from_str("backend", "openai")
        .property_from_str("local-runtime", "candle")
        .property("base-url", "http://127.0.0.1:9/v1")
        .property("model", "my-model")
        .property("api-key-env", "MY_KEY_VARIABLE")
        .property("system-prompt", "Be brief.")
        .property("system-prompt-file", "/tmp/prompt.txt")
        .property("model-path", "/tmp/model.gguf")
        .property("max-tokens", 64u32)
        .property("threads", 3u32)
        .property("timeout", 1500u32)
        .property("max-concurrent", 3u32)
        .property("temperature", 0.5f64)
        .property("seed", 7u64)
        .property("supersede", false)
        .build()
        .expect("builds");
    assert_eq!(
        sidecar.property::<gstreasoning::reasoningsidecar::ReasoningBackend>("backend"),
        gstreasoning::reasoningsidecar::ReasoningBackend::OpenAi
    );
    assert_eq!(
        sidecar.property::<gstreasoning::reasoningsidecar::ReasoningLocalRuntime>("local-runtime"),
        gstreasoning::reasoningsidecar::ReasoningLocalRuntime::Candle
    );
    assert_eq!(
        sidecar.property::<String>("base-url"),
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(sidecar.property::<String>("model"), "my-model");
    assert_eq!(sidecar.property::<String>("api-key-env"), "MY_KEY_VARIABLE");
    assert_eq!(sidecar.property::<String>("system-prompt"), "Be brief.");
    assert_eq!(
        sidecar
            .property::<Option<String>>("system-prompt-file")
            .as_deref(),
        Some("/tmp/prompt.txt")
    );
    assert_eq!(
        sidecar.property::<Option<String>>("model-path").as_deref(),
        Some("/tmp/model.gguf")
    );
    assert_eq!(sidecar.property::<u32>("max-tokens"), 64);
    assert_eq!(sidecar.property::<u32>("threads"), 3);
    assert_eq!(sidecar.property::<u32>("timeout"), 1500);
    assert_eq!(sidecar.property::<u32>("max-concurrent"), 3);
    assert_eq!(sidecar.property::<f64>("temperature"), 0.5);
    assert_eq!(sidecar.property::<u64>("seed"), 7);
    assert!(!sidecar.property::<bool>("supersede"));
    let names: Vec<String> = sidecar
        .list_properties()
        .iter()
        .map(|spec| spec.name().to_owned())
        .collect();
    assert!(!names.iter().any(|name| name == "api-key"), "{names:?}");
}

#[test]
fn pipeline_file_runs() {
    init();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let context = root.join("plugins/reasoning/tests/data/capital.json");
    let out = std::env::temp_dir().join(format!("reasoning-answers-{}.jsonl", std::process::id()));
    let description = interaction_runtime::pipeline_file::load(
        root.join("pipelines/reasoning-local.pipeline"),
        &[
            ("CONTEXT", context.to_str().expect("utf-8 path")),
            ("OUT", out.to_str().expect("utf-8 path")),
        ],
    )
    .expect("the pipeline file loads");
    let pipeline = gst::parse::launch(&description).expect("parses");
    pipeline.set_state(gst::State::Playing).expect("plays");
    let bus = pipeline.bus().expect("bus");
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within a minute");
    assert_eq!(message.type_(), gst::MessageType::Eos, "{message:?}");
    pipeline.set_state(gst::State::Null).expect("stops");
    let text = std::fs::read_to_string(&out).expect("the answers file exists");
    let _ = std::fs::remove_file(&out);
    let results: Vec<ReasoningResult> = text
        .lines()
        .map(|line| ReasoningResult::parse(line.as_bytes()).expect("each line is a result"))
        .collect();
    let last = results.last().expect("at least one result");
    assert!(last.is_final && last.request_id == 1);
    assert!(last.text.contains("Paris"), "{:?}", last.text);
}

#[test]
fn concurrency_limit_queues_requests() {
    // Side by side (no superseding) with one slot: the second request starts only when the
    // first has ended, so none of its results comes before the first one's final result.
    // The timeout counts the wait for the slot too, so request 2 needs time for both answers:
    // on a loaded 2-core CI machine the 30 s default was not always enough.
    let rig = Rig::new(&[
        ("max-tokens", "24"),
        ("supersede", "false"),
        ("max-concurrent", "1"),
        ("timeout", "120000"),
    ]);
    rig.push(&package(1, "What is the capital of France?"));
    rig.push(&package(2, "What is the capital of Italy?"));
    let results = rig.finish(Duration::from_secs(150));
    let final_of_1 = results
        .iter()
        .position(|r| r.request_id == 1 && r.is_final)
        .expect("request 1 ends");
    let first_of_2 = results
        .iter()
        .position(|r| r.request_id == 2)
        .expect("request 2 runs too");
    assert!(first_of_2 > final_of_1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| r.request_id == 2 && r.is_final && r.error.is_none()),
        "{results:?}"
    );
}
