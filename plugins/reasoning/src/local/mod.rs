//! The local backend: a llama-architecture GGUF model (SmolLM2-135M-Instruct by default) run
//! in-process on the CPU with candle's quantized llama, its chat template taken from the GGUF
//! metadata and rendered with minijinja.
//!
//! [`LocalModel`] holds the weights once; every request gets its own [`ModelWeights`] clone
//! (the tensors are shared, only the KV cache is per request). [`LocalModel::generate`] is
//! blocking and checks its cancel flag and deadline before every token, so it stops within one
//! token.

pub mod tokenizer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use crate::chat::ChatMessage;
use tokenizer::{TextStream, Tokenizer};

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

/// Generation parameters for one request.
#[derive(Debug, Clone, Copy)]
pub struct GenerateParams {
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f64,
    pub seed: u64,
    /// Generation stops (with [`StopReason::Timeout`]) when this instant has passed.
    pub deadline: Option<Instant>,
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

/// A loaded model: weights, tokenizer and chat template.
pub struct LocalModel {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    template: String,
    stop_tokens: Vec<u32>,
    device: Device,
}

impl LocalModel {
    /// Loads a GGUF file.
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        let shown = path.display().to_string();
        let mut file = std::fs::File::open(path).map_err(|err| LocalError::Open {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
        let load_error = |err: candle_core::Error| LocalError::Load {
            path: shown.clone(),
            reason: err.to_string(),
        };
        let content = gguf_file::Content::read(&mut file).map_err(load_error)?;
        let tokenizer = Tokenizer::from_gguf(&content)?;
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|value| value.to_string().ok().cloned())
            .unwrap_or_else(|| CHATML_TEMPLATE.to_owned());
        let mut stop_tokens = Vec::new();
        if let Some(eos) = content
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
        let weights = ModelWeights::from_gguf(content, &mut file, &device).map_err(load_error)?;
        Ok(Self {
            weights,
            tokenizer,
            template,
            stop_tokens,
            device,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
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
        mut on_text: impl FnMut(&str),
    ) -> Result<GenerateStats, LocalError> {
        let started = Instant::now();
        let mut prompt_ids = self.tokenizer.encode(prompt);
        let max_tokens = params.max_tokens as usize;
        if prompt_ids.len() + max_tokens > MAX_SEQ_LEN {
            // Keep the end of the prompt: the newest turns and the generation prompt.
            if max_tokens >= MAX_SEQ_LEN {
                return Err(LocalError::PromptTooLong(prompt_ids.len()));
            }
            let keep = MAX_SEQ_LEN - max_tokens;
            prompt_ids.drain(..prompt_ids.len() - keep);
        }
        let prompt_tokens = prompt_ids.len();
        let mut weights = self.weights.clone();
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::All {
                temperature: params.temperature,
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut text = TextStream::default();
        let mut stats = GenerateStats {
            prompt_tokens,
            generated_tokens: 0,
            first_token: None,
            total: Duration::ZERO,
            stop: StopReason::MaxTokens,
        };
        let inference = |err: candle_core::Error| LocalError::Inference(err.to_string());
        let mut input = prompt_ids;
        let mut position = 0;
        for _ in 0..max_tokens {
            if cancel.load(Ordering::Acquire) {
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
            let tokens = Tensor::new(input.as_slice(), &self.device)
                .and_then(|tensor| tensor.unsqueeze(0))
                .map_err(inference)?;
            let logits = weights
                .forward(&tokens, position)
                .and_then(|logits| logits.squeeze(0))
                .map_err(inference)?;
            position += input.len();
            let next = sampler.sample(&logits).map_err(inference)?;
            stats.generated_tokens += 1;
            if stats.first_token.is_none() {
                stats.first_token = Some(started.elapsed());
            }
            if self.stop_tokens.contains(&next) {
                stats.stop = StopReason::EndOfTurn;
                break;
            }
            let piece = text.push(&self.tokenizer, next);
            if !piece.is_empty() {
                on_text(&piece);
            }
            input = vec![next];
        }
        let rest = text.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
        stats.total = started.elapsed();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<LocalModel> {
        let path = interaction_runtime::model_file(DEFAULT_MODEL).ok()?;
        Some(LocalModel::load(&path).expect("the cached SmolLM2 GGUF loads"))
    }

    #[test]
    fn tokenizer_matches_reference_ids() {
        let Some(model) = model() else {
            panic!("SmolLM2 model missing: run scripts/setup.sh");
        };
        let tokenizer = model.tokenizer();
        // Reference ids from Hugging Face `tokenizers` 0.23.3 built from this GGUF's vocabulary
        // and merges with SmolLM2's pre-tokenizer (Digits(individual) + ByteLevel).
        let chat = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
                    Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?\
                    <|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(
            tokenizer.encode(chat),
            [
                1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018,
                411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47,
                2, 198, 1, 520, 9531, 198
            ]
        );
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
        let Some(model) = model() else {
            panic!("SmolLM2 model missing: run scripts/setup.sh");
        };
        let prompt = model
            .render_prompt(&[ChatMessage::user("Hi")])
            .expect("renders");
        // SmolLM2's template adds its default system prompt when none is given.
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn cancel_flag_stops_before_the_first_token() {
        let Some(model) = model() else {
            panic!("SmolLM2 model missing: run scripts/setup.sh");
        };
        let cancel = AtomicBool::new(true);
        let params = GenerateParams {
            max_tokens: 16,
            temperature: 0.0,
            seed: 1,
            deadline: None,
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
        let Some(model) = model() else {
            panic!("SmolLM2 model missing: run scripts/setup.sh");
        };
        let prompt = model
            .render_prompt(&[ChatMessage::user("Write a long story about a dragon.")])
            .expect("renders");
        let cancel = AtomicBool::new(false);
        let params = GenerateParams {
            max_tokens: 100,
            temperature: 0.0,
            seed: 1,
            deadline: None,
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
