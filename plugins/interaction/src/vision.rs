//! What the camera sees: EfficientNet-Lite0 (ImageNet-1k) on the newest video frame, at most
//! once every `vision-interval-ms` of running time, off the streaming thread.
//!
//! The micro-turn packets carry RGB8 frames (`microturnmux`'s video pad). When a frame is due,
//! [`Vision::offer`] copies it to a worker thread, which resizes it to 224 × 224
//! (`kernels::EfficientNetInput`, Pillow-style bilinear, `(v − 127) / 128`), runs the model
//! and keeps the `top-k` classes with their softmax probabilities. The latest result is the
//! visual **observation**: one [`Observation`] per class, all with the running time of the
//! frame, source `camera`. Context packages carry it (`observations`), and an
//! `interaction/observation` bus message announces each new one.
//!
//! The model is opened by the worker at the first frame, so a pipeline without video pays
//! nothing. While a frame is being classified newer frames are not queued (the next due frame
//! is taken after it). A non-live pipeline waits for each result in the micro-turn that offered
//! the frame, so its output does not depend on thread timing; a live one never waits (the
//! observation follows a micro-turn or two later).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interaction_protocol::context::Observation;
use interaction_protocol::packet::VideoFrame;
use ort::session::Session;
use ort::value::Tensor;

use crate::conversation::{Action, Conversation, Field};
use crate::device::{Provider, open_session, require_io};

/// Bus message: a new visual observation (`frame-time`: running time of the frame, ns;
/// `labels`: `label probability, …` best first; `label` and `probability`: the best class;
/// `inference-time`: wall time of the resize and the model, ns).
pub const OBSERVATION: &str = "interaction/observation";
/// The `source` of the observations.
pub const SOURCE: &str = "camera";
/// Width of the model's feature vector.
pub const FEATURES: usize = 1280;
/// Longest wait for a classification in a non-live pipeline.
const WAIT: Duration = Duration::from_secs(30);

/// One class of a classification.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// ImageNet-1k index (0..1000).
    pub index: usize,
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// The top classes of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Best first.
    pub classes: Vec<Class>,
    /// Resize and model, wall time.
    pub elapsed: Duration,
}

/// EfficientNet-Lite0 on ONNX Runtime: `image` f32[1,3,224,224] → `features` f32[1,1280],
/// `logits` f32[1,1000] (the model `models/efficientnet/convert.py` makes), with its class
/// names (one per line, line i = class i).
pub struct Classifier {
    session: Session,
    input: Tensor<f32>,
    front: kernels::EfficientNetInput,
    labels: Vec<String>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("labels", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// Reads a class-name file: one name per line, none empty.
pub fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the class names {}: {e}", path.display()))?;
    let labels: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    if labels.is_empty() || labels.iter().any(String::is_empty) {
        return Err(format!(
            "class names {}: expected one non-empty name per line",
            path.display()
        ));
    }
    Ok(labels)
}

impl Classifier {
    /// Opens the model and checks its inputs, outputs and class count against `labels`.
    pub fn open(model: &Path, labels: Vec<String>, provider: &Provider) -> Result<Self, String> {
        let session = open_session(model, provider, 1)?;
        require_io(&session, model, &["image"], &["features", "logits"])?;
        let side = kernels::EFFICIENTNET_SIDE;
        let input = Tensor::from_array((
            [1usize, 3, side, side],
            vec![0.0f32; kernels::EfficientNetInput::OUTPUT_LEN],
        ))
        .map_err(|e| format!("EfficientNet {}: {e}", model.display()))?;
        let mut classifier = Classifier {
            session,
            input,
            front: kernels::EfficientNetInput::new(),
            labels,
        };
        // One run on a blank input proves the shapes.
        let (features, logits) = classifier.run()?;
        if features.len() != FEATURES || logits.len() != classifier.labels.len() {
            return Err(format!(
                "model {} gives {} features and {} class scores; expected {FEATURES} features \
                 and one score per class name ({})",
                model.display(),
                features.len(),
                logits.len(),
                classifier.labels.len()
            ));
        }
        Ok(classifier)
    }

    fn run(&mut self) -> Result<(Vec<f32>, Vec<f32>), String> {
        let err = |e: ort::Error| format!("EfficientNet: {e}");
        let outputs = self
            .session
            .run(ort::inputs!["image" => &self.input])
            .map_err(err)?;
        let features = outputs["features"]
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .to_vec();
        let logits = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .to_vec();
        Ok((features, logits))
    }

    /// The class names, index order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The pooled features and the softmax probabilities of every class for one RGB8 frame
    /// (any size; packed rows of `width · 3` bytes).
    pub fn probabilities(
        &mut self,
        data: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), String> {
        let frame = kernels::RgbFrame::packed_rgb(data, width, height);
        {
            let (_, input) = self
                .input
                .try_extract_tensor_mut::<f32>()
                .map_err(|e| format!("EfficientNet: {e}"))?;
            self.front
                .run(&frame, input)
                .map_err(|e| format!("video frame {width}x{height}: {e}"))?;
        }
        let (features, mut scores) = self.run()?;
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f32;
        for s in &mut scores {
            *s = (*s - max).exp();
            total += *s;
        }
        for s in &mut scores {
            *s /= total;
        }
        Ok((features, scores))
    }

    /// The `k` most probable classes of one RGB8 frame.
    pub fn classify(
        &mut self,
        data: &[u8],
        width: usize,
        height: usize,
        k: usize,
    ) -> Result<Classification, String> {
        let started = Instant::now();
        let (_, probabilities) = self.probabilities(data, width, height)?;
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| {
            probabilities[b]
                .total_cmp(&probabilities[a])
                .then(a.cmp(&b))
        });
        let classes = order
            .into_iter()
            .take(k.max(1))
            .map(|index| Class {
                index,
                label: self.labels[index].clone(),
                probability: probabilities[index],
            })
            .collect();
        Ok(Classification {
            classes,
            elapsed: started.elapsed(),
        })
    }
}

/// Settings of the visual observations.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    /// Least running time between two classified frames, ns (> 0).
    pub interval: u64,
    /// Classes kept per observation.
    pub top_k: usize,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            interval: 1_000_000_000,
            top_k: 3,
        }
    }
}

struct Job {
    timestamp: u64,
    width: usize,
    height: usize,
    data: Vec<u8>,
}

type JobResult = (u64, Result<Classification, String>);

/// The classifier's thread. The model is opened by the thread at the first job.
pub struct VisionWorker {
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<JobResult>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VisionWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisionWorker").finish_non_exhaustive()
    }
}

impl VisionWorker {
    /// Starts the thread. `labels` are read now (a bad file fails at start); the model is
    /// opened at the first frame.
    pub fn start(
        model: PathBuf,
        labels: &Path,
        provider: Provider,
        top_k: usize,
    ) -> Result<Self, String> {
        if !model.is_file() {
            return Err(format!(
                "the EfficientNet model {} is missing",
                model.display()
            ));
        }
        let labels = read_labels(labels)?;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (result_tx, result_rx) = mpsc::channel::<JobResult>();
        let thread = std::thread::Builder::new()
            .name("interaction-vision".into())
            .spawn(move || {
                let mut labels = Some(labels);
                let mut classifier: Option<Classifier> = None;
                while let Ok(job) = job_rx.recv() {
                    if classifier.is_none() {
                        match Classifier::open(&model, labels.take().unwrap_or_default(), &provider)
                        {
                            Ok(c) => classifier = Some(c),
                            Err(e) => {
                                let _ = result_tx.send((job.timestamp, Err(e)));
                                break;
                            }
                        }
                    }
                    let Some(c) = classifier.as_mut() else {
                        break;
                    };
                    let result = c.classify(&job.data, job.width, job.height, top_k);
                    if result_tx.send((job.timestamp, result)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the vision thread: {e}"))?;
        Ok(VisionWorker {
            jobs: Some(job_tx),
            results: result_rx,
            thread: Some(thread),
        })
    }

    fn submit(&self, frame: &VideoFrame) -> Result<(), String> {
        let job = Job {
            timestamp: frame.timestamp,
            width: frame.width as usize,
            height: frame.height as usize,
            data: frame.data.clone(),
        };
        self.jobs
            .as_ref()
            .ok_or("the vision thread has stopped")?
            .send(job)
            .map_err(|_| "the vision thread has stopped".to_owned())
    }

    fn take(&self, wait: Option<Duration>) -> Result<Option<JobResult>, String> {
        match wait {
            None => match self.results.try_recv() {
                Ok(r) => Ok(Some(r)),
                Err(mpsc::TryRecvError::Empty) => Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => {
                    Err("the vision thread has stopped".into())
                }
            },
            Some(timeout) => match self.results.recv_timeout(timeout) {
                Ok(r) => Ok(Some(r)),
                Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                    "classifying a video frame took longer than {} s",
                    timeout.as_secs()
                )),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Err("the vision thread has stopped".into())
                }
            },
        }
    }
}

impl Drop for VisionWorker {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The visual observations of one stream: which frame is due, the job in flight, the latest
/// result.
#[derive(Debug)]
pub struct Vision {
    config: VisionConfig,
    worker: VisionWorker,
    /// Running time of the last frame handed to the worker.
    last_offered: Option<u64>,
    /// Running time of the frame being classified.
    in_flight: Option<u64>,
    latest: Vec<Observation>,
}

impl Vision {
    pub fn new(config: VisionConfig, worker: VisionWorker) -> Self {
        Vision {
            config,
            worker,
            last_offered: None,
            in_flight: None,
            latest: Vec::new(),
        }
    }

    /// The latest observation (one entry per class, best first; empty before the first).
    pub fn latest(&self) -> &[Observation] {
        &self.latest
    }

    /// One micro-turn: hands the newest frame to the worker when it is due and the worker is
    /// idle, then takes a finished result (waiting for it when `block`), makes it the
    /// conversation's observation and announces it.
    pub fn step(
        &mut self,
        frames: &[VideoFrame],
        block: bool,
        now: u64,
        conversation: &mut Conversation,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        if let Some(frame) = frames.last() {
            let due = self
                .last_offered
                .is_none_or(|t| frame.timestamp >= t.saturating_add(self.config.interval));
            if due && self.in_flight.is_none() && frame.width > 0 && frame.height > 0 {
                self.worker.submit(frame)?;
                self.last_offered = Some(frame.timestamp);
                self.in_flight = Some(frame.timestamp);
            }
        }
        if self.in_flight.is_none() {
            return Ok(());
        }
        let Some((timestamp, result)) = self.worker.take(block.then_some(WAIT))? else {
            return Ok(());
        };
        self.in_flight = None;
        let classification = result.map_err(|e| format!("vision: {e}"))?;
        self.latest = classification
            .classes
            .iter()
            .map(|c| Observation {
                running_time_ns: timestamp,
                source: SOURCE.to_owned(),
                label: c.label.clone(),
                score: Some(c.probability),
            })
            .collect();
        conversation.set_observations(self.latest.clone());
        let best = classification.classes.first();
        out.push(Action::Message {
            name: OBSERVATION,
            at: now,
            fields: vec![
                ("frame-time", Field::U64(timestamp)),
                (
                    "labels",
                    Field::Str(
                        classification
                            .classes
                            .iter()
                            .map(|c| format!("{} {:.3}", c.label, c.probability))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                ),
                (
                    "label",
                    Field::Str(best.map(|c| c.label.clone()).unwrap_or_default()),
                ),
                (
                    "probability",
                    Field::F64(best.map_or(0.0, |c| f64::from(c.probability))),
                ),
                (
                    "inference-time",
                    Field::U64(
                        u64::try_from(classification.elapsed.as_nanos()).unwrap_or(u64::MAX),
                    ),
                ),
            ],
        });
        Ok(())
    }

    /// Flush: forget the stream (a result in flight is dropped when it arrives).
    pub fn reset(&mut self) {
        if self.in_flight.take().is_some() {
            // Wait for the job so that its result cannot be taken for a later frame's.
            let _ = self.worker.take(Some(WAIT));
        }
        self.last_offered = None;
        self.latest.clear();
    }
}
