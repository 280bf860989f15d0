//! Shutting down while the local model generates: the element's stop waits for its generation,
//! and a process that exits mid-generation exits cleanly (llama.cpp's static destructors must
//! not run under a running decode: without the `atexit` handler in `local`, this test failed
//! with SIGSEGV in 5 runs of 5).
//!
//! Kept apart from `local.rs`: the generation count is process-wide, and this binary runs only
//! one generation in-process at a time.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::channel;
use std::time::Duration;

use common::{Rig, package};
use gstreasoning::chat::messages_for;
use gstreasoning::local::{
    DEFAULT_MODEL, GenerateParams, LocalModel, LocalRuntime, running_generations,
};

const GENEROUS: Duration = Duration::from_secs(60);
const LONG_STORY: &str = "Write a long story about a dragon who learns to cook.";

#[test]
fn stopping_the_element_waits_for_its_generation() {
    let rig = Rig::new(&[("max-tokens", "300")]);
    rig.push(&package(1, LONG_STORY));
    rig.first_partial(1, GENEROUS);
    assert_eq!(running_generations(), 1, "the request is generating");
    rig.stop();
    assert_eq!(
        running_generations(),
        0,
        "a generation still ran after the element stopped"
    );
}

/// Set in the child: milliseconds to wait after the first generated text before exiting.
const CHILD_ENV: &str = "REASONING_EXIT_AFTER_MS";

#[test]
fn process_exits_cleanly_while_generating() {
    if let Ok(delay) = std::env::var(CHILD_ENV) {
        generate_then_return(delay.parse().expect("a delay in ms"));
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // Exits land at different points of a decode step (tens of ms each).
    for delay in [0, 7, 13, 21, 29, 37, 47, 59, 71, 97, 131, 173] {
        let output = Command::new(&exe)
            .args(["process_exits_cleanly_while_generating", "--exact"])
            .env(CHILD_ENV, delay.to_string())
            .output()
            .expect("the child runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "exit {delay} ms after the first text: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The child: starts a long llama.cpp generation on its own thread, waits for its first text,
/// then `delay_ms`, and returns, so the test harness exits with the generation running.
fn generate_then_return(delay_ms: u64) {
    // Never dropped: only the generation, not the model's teardown, races with exit.
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    let path = interaction_runtime::model_file(DEFAULT_MODEL).expect("run scripts/setup.sh");
    let model = MODEL.get_or_init(|| {
        LocalModel::load(&path, LocalRuntime::LlamaCpp).expect("the cached GGUF loads")
    });
    let prompt = model
        .render_prompt(&messages_for(&package(1, LONG_STORY), ""))
        .expect("renders");
    let (first_text, text_came) = channel();
    std::thread::spawn(move || {
        let params = GenerateParams {
            max_tokens: 400,
            temperature: 0.0,
            seed: 0,
            deadline: None,
            threads: 0,
        };
        let never = AtomicBool::new(false);
        let _ = model.generate(&prompt, &params, &never, |_| {
            let _ = first_text.send(());
        });
    });
    text_came
        .recv_timeout(GENEROUS)
        .expect("the generation produced text");
    std::thread::sleep(Duration::from_millis(delay_ms));
    assert_eq!(running_generations(), 1, "still generating at exit");
}
