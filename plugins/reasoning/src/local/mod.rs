//! The local backend: a GGUF model (SmolLM2-135M-Instruct by default) run in-process on the
//! CPU, its chat template taken from the GGUF metadata and rendered with minijinja.
//!
//! Two runtimes run the weights ([`LocalRuntime`]):
//! - **llama.cpp** (the default; [`llama`]), through the `llama-cpp-2` bindings: any
//!   architecture llama.cpp knows, its own tokenizer, a KV cache per request;
//! - **candle** ([`candle`]): candle's quantized llama, llama-architecture models with a gpt2
//!   (byte-level BPE) tokenizer only, pure Rust.
//!
//! On the same GGUF, 2 cores, llama.cpp gives the first token about 10× sooner and generates
//! about 8× faster (numbers in the plugin's README). Both share the token loop
//! ([`run_tokens`]): [`LocalModel::generate`] is blocking and checks its cancel flag and
//! deadline before every forward pass, so it stops within one token.
//!
//! A process must not exit while llama.cpp decodes: `exit` runs llama.cpp's C++ static
//! destructors, and a decode running on another thread then reads freed tables and crashes
//! (SIGSEGV in `ggml_cpu_extra_work_size`, reproduced by a program that exits mid-generation;
//! the likely cause of one CI run's test binary crashing at exit after all its tests passed,
//! a cancelled request's last token still decoding). So the element waits for its
//! generations when it stops, and after llama.cpp's first decode an `atexit` handler is
//! registered that stops every generation still running and waits up to [`EXIT_WAIT`] for them
//! to end. `exit` runs handlers in the reverse order of registration, and the function-local
//! statics a decode uses were made (and their destructors registered) by that first decode, so
//! the handler runs before they are destroyed; registered earlier (when llama.cpp starts), it
//! ran too late and the crash stayed. Not covered: an exit during the process's very first
//! forward pass (the handler is not registered yet), statics that llama.cpp first makes later
//! than that, and a forward pass that outlasts [`EXIT_WAIT`].

mod candle;
mod llama;
pub mod tokenizer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use crate::chat::ChatMessage;

/// The model file in the cache, as `models/manifest.toml` stores it.
pub const DEFAULT_MODEL: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// ChatML, used when a GGUF file carries no `tokenizer.chat_template`.
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + \
    '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}\
    {{ '<|im_start|>assistant\n' }}{% endif %}";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot open the model file {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("cannot read the GGUF model {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("the model's tokenizer: {0}")]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("the chat template: {0}")]
    Template(String),
    #[error("the model failed while generating: {0}")]
    Inference(String),
    #[error("the prompt has {0} tokens, more than the model's context allows")]
    PromptTooLong(usize),
}

/// Which runtime runs a local GGUF model.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalRuntime {
    /// llama.cpp, through the `llama-cpp-2` bindings.
    #[default]
    LlamaCpp,
    /// candle's quantized llama (llama architecture, gpt2 tokenizer).
    Candle,
}

impl LocalRuntime {
    pub fn name(self) -> &'static str {
        match self {
            LocalRuntime::LlamaCpp => "llama.cpp",
            LocalRuntime::Candle => "candle",
        }
    }
}

/// Generation parameters for one request.
#[derive(Debug, Clone, Copy)]
pub struct GenerateParams {
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f64,
    pub seed: u64,
    /// Generation stops (with [`StopReason::Timeout`]) when this instant has passed.
    pub deadline: Option<Instant>,
    /// CPU threads of the llama.cpp runtime; 0 picks [`auto_threads`]. candle ignores it (its
    /// matrix products use as many threads as `RAYON_NUM_THREADS` or the machine has).
    pub threads: u32,
}

/// The thread count that `threads: 0` picks: half the cores this process may use, at least 1
/// and at most 8.
///
/// The reasoning model runs beside the interaction model and the pipeline's own threads.
/// llama.cpp's workers wait for each other at a spinning barrier after every graph node (a few
/// hundred per token, without yielding), so as soon as another thread wants one of their cores
/// a descheduled worker holds the others for a scheduler slice at every barrier. On the 2-core
/// project machine, with the `feedback_loop` tests running in parallel beside two busy shell
/// loops, stopping a request mid-answer (the rest of one token) took up to 2.6 s with 2 workers
/// and under 60 ms with 1. Half the cores leaves the rest to everything else. It counts per
/// request: `max-concurrent` requests running at once use that many workers each.
pub fn auto_threads() -> u32 {
    threads_for_cores(
        std::thread::available_parallelism()
            .map(|cores| cores.get())
            .unwrap_or(1),
    )
}

/// The thread count a `threads` setting stands for: itself, or [`auto_threads`] for 0.
pub fn resolve_threads(threads: u32) -> u32 {
    match threads {
        0 => auto_threads(),
        threads => threads,
    }
}

fn threads_for_cores(cores: usize) -> u32 {
    (cores / 2).clamp(1, 8) as u32
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-turn token.
    EndOfTurn,
    /// `max_tokens` were produced.
    MaxTokens,
    /// The cancel flag was raised.
    Cancelled,
    /// The deadline passed.
    Timeout,
}

/// What a generation did, with its timings.
#[derive(Debug, Clone, Copy)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// From the call to the first generated token (prompt processing included).
    pub first_token: Option<Duration>,
    pub total: Duration,
    pub stop: StopReason,
}

impl GenerateStats {
    /// Generated tokens per second after the first token.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let first = self.first_token?;
        let rest = self.generated_tokens.checked_sub(1)?;
        let seconds = (self.total - first).as_secs_f64();
        (rest > 0 && seconds > 0.0).then(|| rest as f64 / seconds)
    }
}

/// How long the process's exit waits for running generations to stop (one forward pass each;
/// a long prompt's first pass is the slowest).
pub const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The generations running in this process, and whether the process is exiting.
static RUNNING: Mutex<usize> = Mutex::new(0);
static ENDED: Condvar = Condvar::new();
static EXITING: AtomicBool = AtomicBool::new(false);

fn running() -> std::sync::MutexGuard<'static, usize> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many generations run now in this process (both runtimes): for tests and diagnostics.
pub fn running_generations() -> usize {
    *running()
}

thread_local! {
    /// Whether this thread is inside [`LocalModel::generate`] (an `on_text` that exits).
    static GENERATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts one generation for as long as it lives.
struct Running;

impl Running {
    fn enter() -> Self {
        *running() += 1;
        GENERATING.set(true);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        GENERATING.set(false);
        let mut count = running();
        *count = count.saturating_sub(1);
        drop(count);
        ENDED.notify_all();
    }
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Run by the C library's `exit`, before the static destructors registered earlier (llama.cpp's
/// among them): raises the process-wide stop and waits for running generations to end (the
/// others, when a generation's own `on_text` called `exit`). Cannot panic (it runs across the
/// FFI boundary).
extern "C" fn stop_generations_at_exit() {
    EXITING.store(true, Ordering::Release);
    let own = usize::from(GENERATING.try_with(|g| g.get()).unwrap_or(false));
    let count = running();
    let _ = ENDED.wait_timeout_while(count, EXIT_WAIT, |count| *count > own);
}

/// Registers [`stop_generations_at_exit`] once, after llama.cpp's first decode (see the module
/// documentation for why not sooner); a single atomic load after that.
fn stop_generations_before_exit() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `atexit` takes a plain C function pointer with no arguments, which
        // `stop_generations_at_exit` is; it is called at most once, at exit. It fails only
        // when the C library is out of memory; the process then goes without the handler.
        let _ = unsafe { atexit(stop_generations_at_exit) };
    });
}

/// A loaded model: the runtime's weights and the chat template.
pub struct LocalModel {
    engine: Engine,
    template: String,
}

enum Engine {
    LlamaCpp(llama::LlamaEngine),
    // Boxed: candle's weights are a large struct, llama.cpp's model a pointer.
    Candle(Box<candle::CandleEngine>),
}

impl LocalModel {
    /// Loads a GGUF file with the given runtime.
    pub fn load(path: &Path, runtime: LocalRuntime) -> Result<Self, LocalError> {
        let (engine, template) = match runtime {
            LocalRuntime::LlamaCpp => {
                let (engine, template) = llama::LlamaEngine::load(path)?;
                (Engine::LlamaCpp(engine), template)
            }
            LocalRuntime::Candle => {
                let (engine, template) = candle::CandleEngine::load(path)?;
                (Engine::Candle(Box::new(engine)), template)
            }
        };
        Ok(Self {
            engine,
            template: template.unwrap_or_else(|| CHATML_TEMPLATE.to_owned()),
        })
    }

    pub fn runtime(&self) -> LocalRuntime {
        match self.engine {
            Engine::LlamaCpp(_) => LocalRuntime::LlamaCpp,
            Engine::Candle(_) => LocalRuntime::Candle,
        }
    }

    /// How many tokens the model's tokenizer makes of `text` (special tokens parsed).
    pub fn count_tokens(&self, text: &str) -> usize {
        match &self.engine {
            Engine::LlamaCpp(engine) => engine.count_tokens(text),
            Engine::Candle(engine) => engine.count_tokens(text),
        }
    }

    /// The prompt for a chat, rendered with the model's own chat template.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, LocalError> {
        let mut environment = minijinja::Environment::new();
        environment
            .add_template("chat", &self.template)
            .map_err(|err| LocalError::Template(err.to_string()))?;
        let template = environment
            .get_template("chat")
            .map_err(|err| LocalError::Template(err.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => "",
                eos_token => "<|im_end|>",
            })
            .map_err(|err| LocalError::Template(err.to_string()))
    }

    /// Generates an answer to `prompt` (a rendered chat), calling `on_text` with every new
    /// piece of text. Blocking; stops within one token of `cancel` being raised.
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: impl FnMut(&str),
    ) -> Result<GenerateStats, LocalError> {
        let _running = Running::enter();
        match &self.engine {
            Engine::LlamaCpp(engine) => engine.generate(prompt, params, cancel, on_text),
            Engine::Candle(engine) => engine.generate(prompt, params, cancel, on_text),
        }
    }
}

/// A GGUF file, opened, with its header (metadata and tensor table) read by candle's reader,
/// which says what is wrong with a file that is not GGUF, truncated or corrupt.
struct GgufHeader {
    file: std::fs::File,
    content: candle_core::quantized::gguf_file::Content,
    /// The path, as error messages show it.
    shown: String,
}

impl GgufHeader {
    fn read(path: &Path) -> Result<Self, LocalError> {
        let shown = path.display().to_string();
        let mut file = std::fs::File::open(path).map_err(|err| LocalError::Open {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut file).map_err(|err| {
                LocalError::Load {
                    path: shown.clone(),
                    reason: err.to_string(),
                }
            })?;
        Ok(Self {
            file,
            content,
            shown,
        })
    }

    fn string(&self, key: &str) -> Option<String> {
        self.content
            .metadata
            .get(key)
            .and_then(|value| value.to_string().ok().cloned())
    }

    fn load_error(&self, reason: impl std::fmt::Display) -> LocalError {
        LocalError::Load {
            path: self.shown.clone(),
            reason: reason.to_string(),
        }
    }
}

/// One runtime's side of the token loop.
trait Decoder {
    /// Runs the model on `input` (the prompt first, then one token at a time) and samples the
    /// next token.
    fn step(&mut self, input: &[u32]) -> Result<u32, LocalError>;
    /// Whether `token` ends the answer.
    fn is_stop(&self, token: u32) -> bool;
    /// The text `token` completes; bytes of a split character are held back.
    fn text(&mut self, token: u32) -> String;
    /// What is still held back at the end.
    fn finish(&mut self) -> String;
}

/// Keeps the end of the prompt (the newest turns and the generation prompt) when it and
/// `max_tokens` do not fit in `context` tokens.
fn fit_prompt(
    mut prompt_ids: Vec<u32>,
    max_tokens: usize,
    context: usize,
) -> Result<Vec<u32>, LocalError> {
    if prompt_ids.len() + max_tokens > context {
        if max_tokens >= context {
            return Err(LocalError::PromptTooLong(prompt_ids.len()));
        }
        let keep = context - max_tokens;
        prompt_ids.drain(..prompt_ids.len() - keep);
    }
    Ok(prompt_ids)
}

/// The token loop both runtimes share: cancel and deadline checked before every step.
fn run_tokens(
    decoder: &mut impl Decoder,
    prompt_ids: Vec<u32>,
    params: &GenerateParams,
    cancel: &AtomicBool,
    started: Instant,
    mut on_text: impl FnMut(&str),
) -> Result<GenerateStats, LocalError> {
    let mut stats = GenerateStats {
        prompt_tokens: prompt_ids.len(),
        generated_tokens: 0,
        first_token: None,
        total: Duration::ZERO,
        stop: StopReason::MaxTokens,
    };
    let mut input = prompt_ids;
    for _ in 0..params.max_tokens {
        if cancel.load(Ordering::Acquire) || EXITING.load(Ordering::Acquire) {
            stats.stop = StopReason::Cancelled;
            break;
        }
        if params
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            stats.stop = StopReason::Timeout;
            break;
        }
        let next = decoder.step(&input)?;
        stats.generated_tokens += 1;
        if stats.first_token.is_none() {
            stats.first_token = Some(started.elapsed());
        }
        if decoder.is_stop(next) {
            stats.stop = StopReason::EndOfTurn;
            break;
        }
        let piece = decoder.text(next);
        if !piece.is_empty() {
            on_text(&piece);
        }
        input.clear();
        input.push(next);
    }
    let rest = decoder.finish();
    if !rest.is_empty() {
        on_text(&rest);
    }
    stats.total = started.elapsed();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::tokenizer::TextStream;
    use super::*;

    fn model(runtime: LocalRuntime) -> LocalModel {
        let path = interaction_runtime::model_file(DEFAULT_MODEL)
            .expect("SmolLM2 model missing: run scripts/setup.sh");
        LocalModel::load(&path, runtime).expect("the cached SmolLM2 GGUF loads")
    }

    const RUNTIMES: [LocalRuntime; 2] = [LocalRuntime::LlamaCpp, LocalRuntime::Candle];

    /// The chat string and its ids from Hugging Face `tokenizers` 0.23.3, built from this
    /// GGUF's vocabulary and merges with SmolLM2's pre-tokenizer (Digits(individual) +
    /// ByteLevel).
    const CHAT: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained \
                        by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of \
                        France?<|im_end|>\n<|im_start|>assistant\n";
    const CHAT_IDS: [u32; 37] = [
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
        407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1,
        520, 9531, 198,
    ];

    #[test]
    fn llama_cpp_tokenizes_like_the_reference() {
        let model = model(LocalRuntime::LlamaCpp);
        let Engine::LlamaCpp(engine) = &model.engine else {
            unreachable!("asked for llama.cpp");
        };
        assert_eq!(engine.tokenize(CHAT), CHAT_IDS);
        assert_eq!(model.count_tokens(CHAT), CHAT_IDS.len());
    }

    #[test]
    fn tokenizer_matches_reference_ids() {
        let model = model(LocalRuntime::Candle);
        let Engine::Candle(engine) = &model.engine else {
            unreachable!("asked for candle");
        };
        let tokenizer = engine.tokenizer();
        assert_eq!(tokenizer.encode(CHAT), CHAT_IDS);
        let mixed = "In 2024,  the  café's price was 12345 €!   Okay?\n\n  x";
        let ids = tokenizer.encode(mixed);
        assert_eq!(
            ids,
            [
                788, 216, 34, 32, 34, 36, 28, 216, 260, 216, 37366, 506, 4319, 436, 216, 33, 34,
                35, 36, 37, 24927, 17, 256, 34763, 47, 8866, 1792
            ]
        );
        assert_eq!(tokenizer.decode(&ids), mixed);
        let unicode = "héllo wörld 🙂 naïve";
        let ids = tokenizer.encode(unicode);
        assert_eq!(ids, [88, 2756, 31394, 267, 29989, 400, 47526, 15486, 46494]);
        // Streaming decode holds back the split bytes of the emoji and gives the same text.
        let mut stream = TextStream::default();
        let mut streamed: String = ids.iter().map(|id| stream.push(tokenizer, *id)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, unicode);
    }

    #[test]
    fn chat_template_comes_from_the_gguf() {
        for runtime in RUNTIMES {
            let prompt = model(runtime)
                .render_prompt(&[ChatMessage::user("Hi")])
                .expect("renders");
            // SmolLM2's template adds its default system prompt when none is given.
            assert_eq!(
                prompt,
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
                 Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                "{runtime:?}"
            );
        }
    }

    #[test]
    fn auto_threads_take_half_the_cores() {
        let picked: Vec<u32> = [1, 2, 3, 4, 16, 17, 64]
            .into_iter()
            .map(threads_for_cores)
            .collect();
        assert_eq!(picked, [1, 1, 1, 2, 8, 8, 8]);
    }

    #[test]
    fn cancel_flag_stops_before_the_first_token() {
        for runtime in RUNTIMES {
            cancel_before_first_token(&model(runtime));
        }
    }

    fn cancel_before_first_token(model: &LocalModel) {
        let cancel = AtomicBool::new(true);
        let params = GenerateParams {
            max_tokens: 16,
            temperature: 0.0,
            seed: 1,
            deadline: None,
            threads: 0,
        };
        let mut pieces = 0;
        let stats = model
            .generate("<|im_start|>user\nHi<|im_end|>\n", &params, &cancel, |_| {
                pieces += 1
            })
            .expect("runs");
        assert_eq!(stats.stop, StopReason::Cancelled);
        assert_eq!(stats.generated_tokens, 0);
        assert_eq!(pieces, 0);
    }

    #[test]
    fn cancel_mid_generation_stops_within_one_token() {
        for runtime in RUNTIMES {
            cancel_mid_generation(&model(runtime));
        }
    }

    fn cancel_mid_generation(model: &LocalModel) {
        let prompt = model
            .render_prompt(&[ChatMessage::user("Write a long story about a dragon.")])
            .expect("renders");
        let cancel = AtomicBool::new(false);
        let params = GenerateParams {
            max_tokens: 100,
            temperature: 0.0,
            seed: 1,
            deadline: None,
            threads: 0,
        };
        let mut pieces = 0;
        let stats = model
            .generate(&prompt, &params, &cancel, |_| {
                pieces += 1;
                if pieces == 3 {
                    cancel.store(true, Ordering::Release);
                }
            })
            .expect("runs");
        assert_eq!(stats.stop, StopReason::Cancelled);
        // The flag was raised while token 3 (or the token completing piece 3) was handed out;
        // no further forward pass ran.
        assert!(
            (3..=4).contains(&stats.generated_tokens),
            "{} tokens after the cancel at the third piece",
            stats.generated_tokens
        );
        assert_eq!(pieces, 3);
    }
}
