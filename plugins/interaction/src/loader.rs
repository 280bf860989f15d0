//! Builds the engine a package asks for, loading its models at start.

use crate::cascade::{Cascade, CascadeConfig};
use crate::device::Provider;
use crate::engine::Engine;
use crate::models::{SileroVad, SmartTurn};
use crate::native::Native;
use crate::package::{Kind, Package};
use crate::policy::{PolicyConfig, TurnDetection};
use crate::transcriber::{Transcribe, TranscriberWorker};
use crate::vision::{Vision, VisionConfig, VisionWorker};

/// What the loader needs from the element's settings.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub policy: PolicyConfig,
    pub user_label: String,
    /// The visual observations (`None`: off). Used when the package has the image classifier.
    pub vision: Option<VisionConfig>,
}

/// Loads the models of `package` on `provider`. Every error names the file and the problem.
pub fn load(
    package: &Package,
    options: &LoadOptions,
    provider: &Provider,
) -> Result<Box<dyn Engine>, String> {
    match package.kind {
        Kind::Cascade => Ok(Box::new(load_cascade(package, options, provider)?)),
        Kind::Native => Ok(Box::new(Native::open(
            package.file("model").map_err(|e| e.to_string())?,
            provider,
            &package.action_labels,
        )?)),
    }
}

/// The cascade with all its models.
pub fn load_cascade(
    package: &Package,
    options: &LoadOptions,
    provider: &Provider,
) -> Result<Cascade, String> {
    let file = |role: &str| package.file(role).map_err(|e| e.to_string());
    let frame_len = package.frontend.vad_frame + package.frontend.vad_context;
    let vad = SileroVad::open(file("vad")?, provider, frame_len)?;
    let turn_model = match options.policy.detection {
        TurnDetection::SmartTurn | TurnDetection::Silence => {
            Some(SmartTurn::open(file("turn")?, provider)?)
        }
    };
    let asr = TranscriberWorker::start(whisper_backend(
        &whisper_files(package)?,
        package.frontend.asr_window_seconds,
    )?)?;
    let config = CascadeConfig {
        policy: options.policy.clone(),
        turn_window_seconds: package.frontend.turn_window_seconds,
        asr_window_seconds: package.frontend.asr_window_seconds,
        user_label: options.user_label.clone(),
        ..CascadeConfig::default()
    };
    let mut cascade = Cascade::new(config, vad, turn_model, Some(asr));
    if let Some(vision) = &options.vision
        && package.files.contains_key("vision")
    {
        let worker = VisionWorker::start(
            file("vision")?.to_path_buf(),
            file("vision-labels")?,
            provider.clone(),
            vision.top_k,
        )?;
        cascade.set_vision(Some(Vision::new(vision.clone(), worker)));
    }
    Ok(cascade)
}

/// Whisper tiny.en (the `interaction_asr` crate) as a transcription backend.
struct WhisperBackend(interaction_asr::Whisper);

impl Transcribe for WhisperBackend {
    fn transcribe(&mut self, audio: &[f32]) -> Result<String, String> {
        self.0
            .transcribe(audio)
            .map(|t| t.text)
            .map_err(|e| e.to_string())
    }
}

/// The Whisper files a cascade package names (`asr-encoder`, `asr-decoder`, `asr-vocabulary`,
/// `asr-config`).
pub fn whisper_files(package: &Package) -> Result<interaction_asr::WhisperFiles, String> {
    let file = |role: &str| {
        package
            .file(role)
            .map(std::path::Path::to_owned)
            .map_err(|e| e.to_string())
    };
    Ok(interaction_asr::WhisperFiles {
        encoder: file("asr-encoder")?,
        decoder: file("asr-decoder")?,
        vocabulary: file("asr-vocabulary")?,
        config: file("asr-config")?,
    })
}

/// Whisper tiny.en from `files`, with a window of `window_seconds`.
pub fn whisper_backend(
    files: &interaction_asr::WhisperFiles,
    window_seconds: f64,
) -> Result<Box<dyn Transcribe>, String> {
    let options = interaction_asr::WhisperOptions {
        window_frames: ((window_seconds * 100.0) as usize).clamp(100, 3000),
        // Two threads (at most the cores there are): measured on the idle 2-core machine, the
        // 30 s window's transcript takes 294–307 ms against 543–577 ms on one thread, and end
        // of turn → transcript falls from 392–432 ms to 94–114 ms (p50). Its idle workers do
        // not spin (see interaction_asr), so Smart Turn on the streaming thread loses only
        // 10–30 ms of its end-of-turn step to it (p50 68 → 79–98 ms).
        threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
        ..interaction_asr::WhisperOptions::default()
    };
    interaction_asr::Whisper::load_files(files, &options)
        .map(|w| Box::new(WhisperBackend(w)) as Box<dyn Transcribe>)
        .map_err(|e| e.to_string())
}
