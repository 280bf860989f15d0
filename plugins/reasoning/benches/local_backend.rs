//! Local backend speed: first-token latency and tokens per second of each raw runtime
//! (llama.cpp and candle, SmolLM2-135M Q4_1), and the element's overhead over it, measured in
//! the same process on the same prompt with greedy decoding (so raw and element produce the
//! same tokens). Ends with the ratio of the two runtimes.
//!
//! `cargo bench -p gst-plugin-reasoning --bench local_backend` (set `BENCH_RUNS` to change the
//! number of runs, 5 by default; `BENCH_THREADS` sets llama.cpp's threads, raw and in the
//! element, 0 (the element's default, half the cores) by default; `RAYON_NUM_THREADS` limits
//! candle's threads).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstreasoning::chat::{self, ChatMessage};
use gstreasoning::local::{self, GenerateParams, LocalModel, LocalRuntime};
use interaction_protocol::context::{
    CONTEXT_CAPS, ContextPackage, RESULT_CAPS, ReasoningResult, Role, Trigger, TriggerReason, Turn,
};

const QUESTION: &str = "Write a short story about a dragon who learns to cook.";
const MAX_TOKENS: u32 = 64;
const SYSTEM_PROMPT: &str = "You are a helpful assistant.";

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn package(request_id: u64) -> ContextPackage {
    let mut package = ContextPackage::new(
        request_id,
        Trigger {
            reason: TriggerReason::UserTurnEnded,
            running_time_ns: 0,
            detail: None,
        },
    );
    package.conversation.push(Turn {
        speaker: "user".into(),
        role: Role::User,
        start_ns: 0,
        end_ns: None,
        text: QUESTION.into(),
        truncation: None,
    });
    package
}

struct Timing {
    first: Duration,
    total: Duration,
    tokens: usize,
}

fn raw_run(model: &LocalModel, messages: &[ChatMessage], threads: u32) -> Timing {
    let prompt = model.render_prompt(messages).expect("renders");
    let params = GenerateParams {
        max_tokens: MAX_TOKENS,
        temperature: 0.0,
        seed: 42,
        deadline: None,
        threads,
    };
    let stats = model
        .generate(&prompt, &params, &AtomicBool::new(false), |_| {})
        .expect("generates");
    Timing {
        first: stats.first_token.expect("a token"),
        total: stats.total,
        tokens: stats.generated_tokens,
    }
}

fn element_run(
    pipeline: &gst::Pipeline,
    appsrc: &gst_app::AppSrc,
    appsink: &gst_app::AppSink,
    id: u64,
) -> (Duration, Duration) {
    let started = Instant::now();
    appsrc
        .push_buffer(gst::Buffer::from_mut_slice(package(id).to_bytes()))
        .expect("pushes");
    let mut first = None;
    loop {
        let sample = appsink
            .try_pull_sample(gst::ClockTime::from_seconds(120))
            .expect("a result");
        let buffer = sample.buffer().expect("buffer");
        let map = buffer.map_readable().expect("readable");
        let result = ReasoningResult::parse(map.as_slice()).expect("result");
        first.get_or_insert_with(|| started.elapsed());
        if result.is_final {
            assert!(result.error.is_none(), "{result:?}");
            let _ = pipeline;
            return (first.unwrap_or_default(), started.elapsed());
        }
    }
}

/// Medians of one runtime's runs.
struct Summary {
    first_ms: f64,
    rate: f64,
}

fn measure(runtime: LocalRuntime, runs: usize, threads: u32) -> Summary {
    let path = interaction_runtime::model_file(local::DEFAULT_MODEL).expect("run scripts/setup.sh");
    let loading = Instant::now();
    let model = LocalModel::load(&path, runtime).expect("loads");
    println!(
        "== {}: model load {:.0} ms",
        runtime.name(),
        loading.elapsed().as_secs_f64() * 1e3
    );
    let messages = chat::messages_for(&package(0), SYSTEM_PROMPT);
    let prompt_tokens = model.count_tokens(&model.render_prompt(&messages).expect("renders"));

    // The element, same runtime, prompt and parameters.
    let pipeline = gst::Pipeline::new();
    let appsrc = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder(CONTEXT_CAPS).build())
        .format(gst::Format::Time)
        .build();
    let sidecar = gst::ElementFactory::make("reasoningsidecar")
        .property("max-tokens", MAX_TOKENS)
        .property("threads", threads)
        .property("system-prompt", SYSTEM_PROMPT)
        .property("model-path", path.to_str().expect("utf-8 path"))
        .property_from_str(
            "local-runtime",
            match runtime {
                LocalRuntime::LlamaCpp => "llama-cpp",
                LocalRuntime::Candle => "candle",
            },
        )
        .build()
        .expect("element");
    let appsink = gst_app::AppSink::builder()
        .caps(&gst::Caps::builder(RESULT_CAPS).build())
        .sync(false)
        .build();
    pipeline
        .add_many([appsrc.upcast_ref(), &sidecar, appsink.upcast_ref()])
        .expect("adds");
    gst::Element::link_many([appsrc.upcast_ref(), &sidecar, appsink.upcast_ref()]).expect("links");
    pipeline.set_state(gst::State::Playing).expect("plays");

    // Warm-up, then raw and element runs alternated, so that both see the same machine load
    // (the machine is shared); the overhead is the median of the per-pair ratios.
    raw_run(&model, &messages, threads);
    element_run(&pipeline, &appsrc, &appsink, 1);
    let mut raw_first = Vec::new();
    let mut raw_total = Vec::new();
    let mut raw_rate = Vec::new();
    let mut element_first = Vec::new();
    let mut element_total = Vec::new();
    let mut first_ratio = Vec::new();
    let mut total_ratio = Vec::new();
    let mut tokens = 0;
    for run in 0..runs {
        let timing = raw_run(&model, &messages, threads);
        tokens = timing.tokens;
        let (first, total) = element_run(&pipeline, &appsrc, &appsink, run as u64 + 2);
        raw_first.push(timing.first.as_secs_f64() * 1e3);
        raw_total.push(timing.total.as_secs_f64() * 1e3);
        raw_rate.push((timing.tokens - 1) as f64 / (timing.total - timing.first).as_secs_f64());
        element_first.push(first.as_secs_f64() * 1e3);
        element_total.push(total.as_secs_f64() * 1e3);
        first_ratio.push(first.as_secs_f64() / timing.first.as_secs_f64());
        total_ratio.push(total.as_secs_f64() / timing.total.as_secs_f64());
    }
    pipeline.set_state(gst::State::Null).expect("stops");

    let raw_first = median(&mut raw_first);
    let raw_total = median(&mut raw_total);
    let raw_rate = median(&mut raw_rate);
    let element_first = median(&mut element_first);
    let element_total = median(&mut element_total);
    println!(
        "prompt {prompt_tokens} tokens, {tokens} generated tokens, median of {runs} runs, \
         {} CPU threads{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match runtime {
            LocalRuntime::Candle => String::new(),
            LocalRuntime::LlamaCpp => {
                format!(", llama.cpp threads {}", local::resolve_threads(threads))
            }
        }
    );
    println!(
        "raw runtime : first token {raw_first:7.1} ms, total {raw_total:7.1} ms, {raw_rate:6.1} tokens/s"
    );
    println!("element     : first result {element_first:7.1} ms, final {element_total:7.1} ms");
    println!(
        "element / raw (median of per-run ratios): first {:.3}x, total {:.3}x",
        median(&mut first_ratio),
        median(&mut total_ratio)
    );
    Summary {
        first_ms: raw_first,
        rate: raw_rate,
    }
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5);
    let threads: u32 = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|threads| threads.parse().ok())
        .unwrap_or(0);
    gst::init().expect("GStreamer");
    gstreasoning::plugin_register_static().expect("registers");
    let llama = measure(LocalRuntime::LlamaCpp, runs, threads);
    let candle = measure(LocalRuntime::Candle, runs, threads);
    println!(
        "llama.cpp against candle (raw medians): first token {:.3}x the time, {:.2}x the tokens/s",
        llama.first_ms / candle.first_ms,
        llama.rate / candle.rate
    );
}
