//! The llama.cpp runtime, through the `llama-cpp-2` bindings (llama.cpp built from the source
//! the `llama-cpp-sys-2` crate vendors; CPU only).
//!
//! The model is loaded once (memory-mapped); every request gets its own context, sized to the
//! prompt plus `max_tokens`, so that requests never share a KV cache. The prompt goes through
//! in one batch, then one token per step.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::tokenizer::TextStream;
use super::{
    Decoder, GenerateParams, GenerateStats, GgufHeader, LocalError, fit_prompt, run_tokens,
};

/// llama.cpp's process-wide initialisation, done once (the bindings refuse a second one).
fn backend() -> Result<&'static LlamaBackend, LocalError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|err| err.to_string())?;
            // llama.cpp logs every tensor at load to stderr; our errors say what failed.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|reason| LocalError::Inference(format!("llama.cpp did not start: {reason}")))
}

/// Creating contexts in parallel is not sound in llama.cpp (it may write to the model), so
/// contexts are created one at a time; they then run in parallel.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

pub(super) struct LlamaEngine {
    model: LlamaModel,
}

impl LlamaEngine {
    /// Loads a GGUF file; gives the engine and the file's chat template, if it has one.
    pub(super) fn load(path: &Path) -> Result<(Self, Option<String>), LocalError> {
        // The header is read first: llama.cpp, whose log is off, only says that it failed.
        let header = GgufHeader::read(path)?;
        let architecture = header
            .string("general.architecture")
            .unwrap_or_else(|| "unknown".into());
        let template = header.string("tokenizer.chat_template");
        let needed = header
            .content
            .tensor_infos
            .values()
            .map(|info| {
                let bytes = info.shape.elem_count() / info.ggml_dtype.block_size()
                    * info.ggml_dtype.type_size();
                header.content.tensor_data_offset + info.offset + bytes as u64
            })
            .max()
            .unwrap_or(0);
        let length = header.file.metadata().map_or(u64::MAX, |meta| meta.len());
        if length < needed {
            return Err(header.load_error(format_args!(
                "the file is truncated: {length} bytes, its tensors need {needed}"
            )));
        }
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|err| {
                header.load_error(format_args!(
                    "llama.cpp could not load it ({err}; architecture `{architecture}`): an \
                     architecture or tensor type this llama.cpp does not know, or a corrupt file"
                ))
            })?;
        Ok((Self { model }, template))
    }

    pub(super) fn tokenize(&self, text: &str) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|token| token.0 as u32)
            .collect()
    }

    pub(super) fn count_tokens(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }

    pub(super) fn generate(
        &self,
        prompt: &str,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: impl FnMut(&str),
    ) -> Result<GenerateStats, LocalError> {
        let started = Instant::now();
        let max_tokens = params.max_tokens as usize;
        let trained = self.model.n_ctx_train() as usize;
        let prompt_ids = fit_prompt(self.tokenize(prompt), max_tokens, trained)?;
        if prompt_ids.is_empty() {
            return Err(LocalError::Inference("the prompt is empty".into()));
        }
        let context_tokens = (prompt_ids.len() + max_tokens).min(trained);
        let threads = super::resolve_threads(params.threads) as i32;
        let context_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(context_tokens as u32))
            .with_n_batch(prompt_ids.len() as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let context = {
            let _one_at_a_time = CONTEXT_CREATION
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.model
                .new_context(backend()?, context_params)
                .map_err(|err| {
                    LocalError::Inference(format!(
                        "llama.cpp could not make a context of {context_tokens} tokens: {err}"
                    ))
                })?
        };
        let sampler = if params.temperature <= 0.0 {
            LlamaSampler::greedy()
        } else {
            LlamaSampler::chain_simple([
                LlamaSampler::temp(params.temperature as f32),
                LlamaSampler::dist(params.seed as u32),
            ])
        };
        let mut decoder = LlamaDecoder {
            engine: self,
            context,
            batch: LlamaBatch::new(prompt_ids.len(), 1),
            sampler,
            text: TextStream::default(),
            position: 0,
            piece: Vec::new(),
        };
        run_tokens(&mut decoder, prompt_ids, params, cancel, started, on_text)
    }
}

struct LlamaDecoder<'a> {
    engine: &'a LlamaEngine,
    context: LlamaContext<'a>,
    batch: LlamaBatch<'static>,
    sampler: LlamaSampler,
    text: TextStream,
    position: i32,
    piece: Vec<u8>,
}

impl Decoder for LlamaDecoder<'_> {
    fn step(&mut self, input: &[u32]) -> Result<u32, LocalError> {
        self.batch.clear();
        let last = input.len().saturating_sub(1);
        for (index, token) in input.iter().enumerate() {
            self.batch
                .add(
                    LlamaToken(*token as i32),
                    self.position + index as i32,
                    &[0],
                    index == last,
                )
                .map_err(|err| LocalError::Inference(err.to_string()))?;
        }
        self.context
            .decode(&mut self.batch)
            .map_err(|err| LocalError::Inference(format!("llama.cpp decode: {err}")))?;
        super::stop_generations_before_exit();
        self.position += input.len() as i32;
        let next = self
            .sampler
            .sample(&self.context, self.batch.n_tokens() - 1);
        Ok(next.0 as u32)
    }

    fn is_stop(&self, token: u32) -> bool {
        self.engine.model.vocab().is_eog(LlamaToken(token as i32))
    }

    fn text(&mut self, token: u32) -> String {
        self.piece.clear();
        self.engine.model.vocab().token_to_piece_into(
            LlamaToken(token as i32),
            &mut self.piece,
            false,
            None,
        );
        self.text.push_bytes(&self.piece)
    }

    fn finish(&mut self) -> String {
        self.text.finish()
    }
}
