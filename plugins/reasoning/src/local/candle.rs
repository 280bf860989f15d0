//! The candle runtime: candle's quantized llama with the GGUF's gpt2 vocabulary
//! ([`super::tokenizer`]). Every request gets its own [`ModelWeights`] clone: the tensors are
//! shared, only the KV cache is per request.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use super::tokenizer::{TextStream, Tokenizer};
use super::{
    Decoder, GenerateParams, GenerateStats, GgufHeader, LocalError, fit_prompt, run_tokens,
};

pub(super) struct CandleEngine {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    stop_tokens: Vec<u32>,
    device: Device,
}

impl CandleEngine {
    /// Loads a GGUF file; gives the engine and the file's chat template, if it has one.
    pub(super) fn load(path: &Path) -> Result<(Self, Option<String>), LocalError> {
        let header = GgufHeader::read(path)?;
        let tokenizer = Tokenizer::from_gguf(&header.content)?;
        let template = header.string("tokenizer.chat_template");
        let mut stop_tokens = Vec::new();
        if let Some(eos) = header
            .content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|value| value.to_u32().ok())
        {
            stop_tokens.push(eos);
        }
        for token in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tokenizer.token_id(token)
                && !stop_tokens.contains(&id)
            {
                stop_tokens.push(id);
            }
        }
        let device = Device::Cpu;
        let GgufHeader {
            mut file,
            content,
            shown,
        } = header;
        let weights = ModelWeights::from_gguf(content, &mut file, &device).map_err(|err| {
            LocalError::Load {
                path: shown,
                reason: err.to_string(),
            }
        })?;
        let engine = Self {
            weights,
            tokenizer,
            stop_tokens,
            device,
        };
        Ok((engine, template))
    }

    #[cfg(test)]
    pub(super) fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub(super) fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text).len()
    }

    pub(super) fn generate(
        &self,
        prompt: &str,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: impl FnMut(&str),
    ) -> Result<GenerateStats, LocalError> {
        let started = Instant::now();
        let prompt_ids = fit_prompt(
            self.tokenizer.encode(prompt),
            params.max_tokens as usize,
            MAX_SEQ_LEN,
        )?;
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::All {
                temperature: params.temperature,
            }
        };
        let mut decoder = CandleDecoder {
            engine: self,
            weights: self.weights.clone(),
            sampler: LogitsProcessor::from_sampling(params.seed, sampling),
            text: TextStream::default(),
            position: 0,
        };
        run_tokens(&mut decoder, prompt_ids, params, cancel, started, on_text)
    }
}

struct CandleDecoder<'a> {
    engine: &'a CandleEngine,
    weights: ModelWeights,
    sampler: LogitsProcessor,
    text: TextStream,
    position: usize,
}

impl Decoder for CandleDecoder<'_> {
    fn step(&mut self, input: &[u32]) -> Result<u32, LocalError> {
        let inference = |err: candle_core::Error| LocalError::Inference(err.to_string());
        let tokens = Tensor::new(input, &self.engine.device)
            .and_then(|tensor| tensor.unsqueeze(0))
            .map_err(inference)?;
        let logits = self
            .weights
            .forward(&tokens, self.position)
            .and_then(|logits| logits.squeeze(0))
            .map_err(inference)?;
        self.position += input.len();
        self.sampler.sample(&logits).map_err(inference)
    }

    fn is_stop(&self, token: u32) -> bool {
        self.engine.stop_tokens.contains(&token)
    }

    fn text(&mut self, token: u32) -> String {
        self.text.push(&self.engine.tokenizer, token)
    }

    fn finish(&mut self) -> String {
        self.text.finish()
    }
}
