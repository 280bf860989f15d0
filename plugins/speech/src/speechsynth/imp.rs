//! `speechsynth` internals.
//!
//! Three threads meet here:
//! - the sink pad's streaming thread (text and events) fills the job queue;
//! - the worker thread synthesises jobs into audio chunks;
//! - the source pad's task cuts chunks into buffers, paces them on the clock in live mode,
//!   fades out on a yield and sends progress upstream.
//!
//! Locks: `settings`, `input`, `queue` (with its condition variable), `output`, and the small
//! `shared` and `worker` slots. Order: `input` before `queue`; `output` is never held with
//! `queue`. `settings` and `shared` are leaves: taken briefly (values cloned out) and never
//! held while another lock is taken. No lock is held across a push, a clock wait or a
//! synthesis (the worker takes `queue` only between pieces).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use interaction_protocol::events::{
    self, Backchannel, Pause, Prepare, Progress, ProgressReason, Resume, Speak, Yield, messages,
};

use super::Backend;
use crate::text::{self, Phrase, PhraseSplitter, SplitConfig, Utf8Stream, speakable};
use crate::voice::{CachedVoice, EspeakVoice, PiperVoice, SynthParams, SynthesisSink, Voice};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "speechsynth",
        gst::DebugColorFlags::empty(),
        Some("Streaming, interruptible speech synthesis"),
    )
});

/// The Piper voice keeps the audio of this many short phrases (fillers, back-channels)...
const PHRASE_CACHE_PHRASES: usize = 32;
/// ...of at most this many characters.
const PHRASE_CACHE_CHARS: usize = 40;
/// A *prepare* may keep longer phrases: the sentences of an answer that will be said soon.
const PREPARED_PHRASE_CHARS: usize = 300;
const DEFAULT_RATE: f64 = 1.0;
const DEFAULT_VOLUME: f64 = 1.0;
const DEFAULT_SENTENCE_SILENCE_MS: u32 = 200;
const DEFAULT_BUFFER_DURATION_MS: u32 = 10;
const DEFAULT_FADE_DURATION_MS: u32 = 5;
const DEFAULT_IS_LIVE: bool = false;
const DEFAULT_FIRST_PHRASE_WORDS: u32 = 0;
const DEFAULT_NOISE: f64 = -1.0;
const DEFAULT_THREADS: u32 = 0;
/// The worker stops synthesising ahead when this much audio waits for output.
const MAX_AUDIO_AHEAD_SECONDS: u64 = 30;
/// The default Piper voice, in the model cache.
pub const DEFAULT_PIPER_VOICE: &str = "piper/en_US-joe-medium.onnx";
const DEFAULT_ESPEAK_VOICE: &str = "en-us";

#[derive(Debug, Clone, PartialEq)]
struct Settings {
    backend: Backend,
    voice: Option<String>,
    rate: f64,
    volume: f64,
    sentence_silence_ms: u32,
    buffer_duration_ms: u32,
    fade_duration_ms: u32,
    is_live: bool,
    first_phrase_words: u32,
    noise_scale: f64,
    noise_w: f64,
    threads: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            voice: None,
            rate: DEFAULT_RATE,
            volume: DEFAULT_VOLUME,
            sentence_silence_ms: DEFAULT_SENTENCE_SILENCE_MS,
            buffer_duration_ms: DEFAULT_BUFFER_DURATION_MS,
            fade_duration_ms: DEFAULT_FADE_DURATION_MS,
            is_live: DEFAULT_IS_LIVE,
            first_phrase_words: DEFAULT_FIRST_PHRASE_WORDS,
            noise_scale: DEFAULT_NOISE,
            noise_w: DEFAULT_NOISE,
            threads: DEFAULT_THREADS,
        }
    }
}

impl Settings {
    fn params(&self) -> SynthParams {
        SynthParams {
            rate: self.rate,
            noise_scale: (self.noise_scale >= 0.0).then_some(self.noise_scale as f32),
            noise_w: (self.noise_w >= 0.0).then_some(self.noise_w as f32),
        }
    }

    fn split_config(&self) -> SplitConfig {
        SplitConfig {
            first_phrase_words: self.first_phrase_words as usize,
            ..SplitConfig::default()
        }
    }
}

/// The sink side: text reassembly and phrase splitting for the current utterance.
struct Input {
    utf8: Utf8Stream,
    splitter: PhraseSplitter,
    utterance: u64,
    /// Whether an utterance is open (text or a speak event since the last end).
    open: bool,
    /// Whether any utterance was ever opened (the first implicit id is 0).
    any_utterance: bool,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Running time of the text that the next phrase starts with.
    pending_time: Option<gst::ClockTime>,
}

impl Input {
    fn new(config: SplitConfig) -> Self {
        Self {
            utf8: Utf8Stream::default(),
            splitter: PhraseSplitter::new(config),
            utterance: 0,
            open: false,
            any_utterance: false,
            segment: gst::FormattedSegment::new(),
            pending_time: None,
        }
    }
}

#[derive(Debug)]
enum JobKind {
    Phrase {
        phrase: Phrase,
        silence_ms: u32,
    },
    /// The end of an utterance: becomes a `completed` progress when it plays out.
    End,
    Backchannel(String),
    /// Phrases to synthesise into the phrase cache while nothing else waits (*prepare*).
    Prepare(Vec<String>),
}

#[derive(Debug)]
struct Job {
    epoch: u64,
    utterance: Option<u64>,
    not_before: Option<gst::ClockTime>,
    kind: JobKind,
}

/// Where the listener is in an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    utterance: u64,
    characters: u64,
    bytes: u64,
}

/// Synthesised audio of one job. The worker appends to it while the source task plays it.
#[derive(Debug)]
struct Chunk {
    id: u64,
    epoch: u64,
    utterance: Option<u64>,
    phrase: Option<Phrase>,
    not_before: Option<gst::ClockTime>,
    speech: Vec<f32>,
    /// Speech plus the silence after it, in samples.
    total: usize,
    /// First and last sample above the noise floor (for progress inside a phrase).
    voiced: (usize, usize),
    /// Samples already output.
    position: usize,
    end_marker: bool,
    /// The worker has finished this chunk (`total` and `voiced` are final).
    complete: bool,
    /// Where each spoken word ends (samples), when the voice knows.
    word_ends: Option<Vec<usize>>,
}

impl Chunk {
    fn sample(&self, index: usize) -> f32 {
        self.speech.get(index).copied().unwrap_or(0.0)
    }

    /// Plays at most `fade` samples into `out`, fading to silence (squared ramp); returns how
    /// many.
    fn fade_out(&mut self, fade: usize, out: &mut Vec<f32>) -> usize {
        let faded = fade.min(self.available() - self.position);
        for i in 0..faded {
            let gain = 1.0 - (i as f32 + 1.0) / faded as f32;
            out.push(self.sample(self.position + i) * gain * gain);
        }
        self.position += faded;
        faded
    }

    /// Samples that can be output now.
    fn available(&self) -> usize {
        if self.complete {
            self.total
        } else {
            self.speech.len()
        }
    }

    fn finished(&self) -> bool {
        self.complete && self.position >= self.total
    }

    /// What has been heard of this chunk's phrase after `position` samples: the end of the
    /// last word whose estimated end time has passed. Within a phrase the position is
    /// estimated linearly over the voiced part, so a partly spoken word does not count.
    fn heard_at(&self, position: usize) -> Option<Heard> {
        let utterance = self.utterance?;
        let phrase = self.phrase.as_ref()?;
        let done = Heard {
            utterance,
            characters: phrase.end_char,
            bytes: phrase.end_byte,
        };
        if self.complete && position >= self.speech.len() {
            return Some(done);
        }
        // Exact word times from the voice, when its words are the text's words.
        let text_words: Vec<(u64, u64)> = phrase.word_ends_spoken();
        if let Some(ends) = &self.word_ends
            && ends.len() == text_words.len()
        {
            let words_heard = ends.iter().take_while(|&&end| end <= position).count();
            let (characters, bytes) = match words_heard {
                0 => (phrase.start_char, phrase.start_byte),
                n if n == ends.len() => (phrase.end_char, phrase.end_byte),
                n => text_words[n - 1],
            };
            return Some(Heard {
                utterance,
                characters,
                bytes,
            });
        }
        let (start, end) = if self.complete {
            self.voiced
        } else {
            (0, self.speech.len().max(1) * 2)
        };
        if position >= end || end <= start {
            return Some(done);
        }
        let fraction = position.saturating_sub(start) as f64 / (end - start) as f64;
        let span = (phrase.end_char - phrase.start_char) as f64;
        let estimate = phrase.start_char as f64 + fraction * span;
        let (characters, bytes) = phrase
            .word_ends_spoken()
            .into_iter()
            .rfind(|&(chars, _)| chars as f64 <= estimate)
            .unwrap_or((phrase.start_char, phrase.start_byte));
        Some(Heard {
            utterance,
            characters,
            bytes,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct YieldRequest {
    /// Chunks of an epoch below this are cut.
    epoch: u64,
    at: Option<gst::ClockTime>,
}

/// A *pause* in force (live only).
#[derive(Debug, Clone, Copy)]
struct PauseState {
    /// The output position at which it ends by itself (`max-duration`).
    until: Option<gst::ClockTime>,
    /// Whether the output has faded out already (the next buffers are silence).
    faded: bool,
}

/// State shared by the three threads, behind `Shared::queue`.
struct Queue {
    epoch: u64,
    jobs: VecDeque<Job>,
    audio: VecDeque<Chunk>,
    synthesizing: bool,
    input_eos: bool,
    flushing: bool,
    shutdown: bool,
    playing: bool,
    pending_yield: Option<YieldRequest>,
    paused: Option<PauseState>,
    /// Samples of fade-in still to apply after a resume, of `fade_in_length`.
    fade_in_left: usize,
    fade_in_length: usize,
    failed: bool,
    sample_rate: u32,
    /// Running time of output sample 0, and samples output since.
    origin: Option<gst::ClockTime>,
    samples_out: u64,
    clock_wait: Option<gst::SingleShotClockId>,
    /// The latest position heard, and whether that utterance was completed.
    heard: Option<Heard>,
    completed: bool,
    /// The utterance whose start was last announced on the bus.
    announced: Option<u64>,
    /// Progress to send upstream once the flush is over.
    after_flush: Vec<Progress>,
}

impl Queue {
    fn new(sample_rate: u32) -> Self {
        Self {
            epoch: 0,
            jobs: VecDeque::new(),
            audio: VecDeque::new(),
            synthesizing: false,
            input_eos: false,
            flushing: false,
            shutdown: false,
            playing: false,
            pending_yield: None,
            paused: None,
            fade_in_left: 0,
            fade_in_length: 0,
            failed: false,
            sample_rate,
            origin: None,
            samples_out: 0,
            clock_wait: None,
            heard: None,
            completed: false,
            announced: None,
            after_flush: Vec::new(),
        }
    }

    fn time_of(&self, samples: u64) -> gst::ClockTime {
        let origin = self.origin.unwrap_or(gst::ClockTime::ZERO);
        origin
            + gst::ClockTime::SECOND
                .mul_div_floor(samples, u64::from(self.sample_rate.max(1)))
                .unwrap_or(gst::ClockTime::ZERO)
    }

    fn position(&self) -> gst::ClockTime {
        self.time_of(self.samples_out)
    }

    fn audio_ahead(&self) -> u64 {
        self.audio
            .iter()
            .map(|chunk| chunk.available().saturating_sub(chunk.position) as u64)
            .sum()
    }

    fn idle(&self) -> bool {
        self.audio.is_empty() && self.jobs.is_empty() && !self.synthesizing
    }

    fn unschedule(&mut self) {
        if let Some(wait) = self.clock_wait.take() {
            wait.unschedule();
        }
    }

    /// The progress to report when the current utterance is cut now.
    fn interrupted_progress(&self) -> Option<Progress> {
        let heard = self.heard?;
        (!self.completed).then(|| Progress {
            utterance_id: heard.utterance,
            characters: heard.characters,
            bytes: heard.bytes,
            running_time: self.position(),
            reason: ProgressReason::Interrupted,
        })
    }
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The source task's own state.
#[derive(Default)]
struct Output {
    need_stream_start: bool,
    need_caps: bool,
    need_segment: bool,
    discont: bool,
    format: Option<gst_audio::AudioFormat>,
}

/// What the source task does next.
enum Action {
    Buffer {
        samples: Vec<f32>,
        progress: Vec<Progress>,
        started: Option<(u64, gst::ClockTime)>,
        yielded: bool,
    },
    Progress(Vec<Progress>),
    Eos,
    Wait,
}

pub struct SpeechSynth {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Arc<Mutex<Settings>>,
    input: Mutex<Input>,
    shared: Mutex<Option<Arc<Shared>>>,
    output: Mutex<Output>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SpeechSynth {
    fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        lock(&self.shared).clone()
    }

    // ---- start and stop -------------------------------------------------------------------

    fn load_voice(settings: &Settings) -> Result<Box<dyn Voice>, gst::ErrorMessage> {
        match settings.backend {
            Backend::Piper => {
                let path = match &settings.voice {
                    Some(path) => std::path::PathBuf::from(path),
                    None => interaction_runtime::model_file(DEFAULT_PIPER_VOICE)
                        .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ["{}", e]))?,
                };
                let voice = PiperVoice::load(&path, settings.threads as usize).map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::OpenRead,
                        ["Cannot load the voice: {}", e]
                    )
                })?;
                Ok(Box::new(
                    CachedVoice::new(Box::new(voice), PHRASE_CACHE_PHRASES, PHRASE_CACHE_CHARS)
                        .with_prepared_chars(PREPARED_PHRASE_CHARS),
                ))
            }
            Backend::Espeak => {
                let name = settings.voice.as_deref().unwrap_or(DEFAULT_ESPEAK_VOICE);
                let voice = EspeakVoice::load(name).map_err(|e| {
                    gst::error_msg!(
                        gst::ResourceError::OpenRead,
                        ["Cannot start espeak-ng: {}", e]
                    )
                })?;
                Ok(Box::new(voice))
            }
        }
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings();
        let started = std::time::Instant::now();
        let voice = Self::load_voice(&settings)?;
        gst::info!(
            CAT,
            imp = self,
            "{:?} voice loaded in {:.0} ms, {} Hz",
            settings.backend,
            started.elapsed().as_secs_f64() * 1000.0,
            voice.sample_rate()
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(voice.sample_rate())),
            changed: Condvar::new(),
        });
        *lock(&self.shared) = Some(shared.clone());
        *lock(&self.input) = Input::new(settings.split_config());
        *lock(&self.output) = Output {
            need_stream_start: true,
            need_caps: true,
            need_segment: true,
            discont: true,
            format: None,
        };
        let element = self.obj().downgrade();
        let settings = self.settings.clone();
        let worker = std::thread::Builder::new()
            .name("speechsynth-worker".into())
            .spawn(move || worker_loop(element, settings, shared, voice))
            .map_err(|e| {
                gst::error_msg!(gst::CoreError::Thread, ["Cannot start the worker: {}", e])
            })?;
        *lock(&self.worker) = Some(worker);
        Ok(())
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        let element = self.obj().downgrade();
        self.srcpad.start_task(move || {
            if let Some(element) = element.upgrade() {
                element.imp().src_loop();
            }
        })
    }

    fn stop(&self) {
        if let Some(shared) = self.shared() {
            let mut queue = shared.lock();
            queue.shutdown = true;
            queue.flushing = true;
            queue.unschedule();
            drop(queue);
            shared.changed.notify_all();
        }
        if let Err(error) = self.srcpad.stop_task() {
            gst::warning!(CAT, imp = self, "Could not stop the task: {error}");
        }
        if let Some(worker) = lock(&self.worker).take()
            && worker.join().is_err()
        {
            gst::error!(CAT, imp = self, "The worker thread panicked");
        }
        *lock(&self.shared) = None;
    }

    // ---- the sink side --------------------------------------------------------------------

    fn enqueue(&self, input: &mut Input, phrases: Vec<Phrase>, end: bool) {
        let Some(shared) = self.shared() else { return };
        let silence = lock(&self.settings).sentence_silence_ms;
        let mut queue = shared.lock();
        if queue.flushing {
            return;
        }
        let epoch = queue.epoch;
        for phrase in phrases {
            let silence_ms = if phrase.sentence_end { silence } else { 0 };
            queue.jobs.push_back(Job {
                epoch,
                utterance: Some(input.utterance),
                not_before: input.pending_time,
                kind: JobKind::Phrase { phrase, silence_ms },
            });
        }
        if end {
            queue.jobs.push_back(Job {
                epoch,
                utterance: Some(input.utterance),
                not_before: None,
                kind: JobKind::End,
            });
        }
        drop(queue);
        shared.changed.notify_all();
    }

    /// Ends the open utterance: what waits in the splitter is spoken, then `completed`.
    fn end_utterance(&self, input: &mut Input) {
        let mut text = input.utf8.finish();
        let mut phrases = input.splitter.push(&std::mem::take(&mut text));
        phrases.extend(input.splitter.finish());
        let open = input.open;
        if open || !phrases.is_empty() {
            self.enqueue(input, phrases, true);
        }
        input.open = false;
    }

    fn open_utterance(&self, input: &mut Input, id: Option<u64>) {
        input.utterance = match id {
            Some(id) => id,
            None if input.any_utterance => input.utterance.wrapping_add(1),
            None => 0,
        };
        input.any_utterance = true;
        input.open = true;
        input.splitter = PhraseSplitter::new(lock(&self.settings).split_config());
        input.utf8 = Utf8Stream::default();
        input.pending_time = None;
    }

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ["Cannot read a buffer"]);
            gst::FlowError::Error
        })?;
        let mut input = lock(&self.input);
        if !input.open {
            self.open_utterance(&mut input, None);
        }
        let text = input.utf8.push(map.as_slice());
        let running_time = input.segment.to_running_time(buffer.pts());
        if input.pending_time.is_none() {
            input.pending_time = running_time;
        }
        let phrases = input.splitter.push(&text);
        if !phrases.is_empty() {
            self.enqueue(&mut input, phrases, false);
            input.pending_time = running_time;
        }
        match self.shared() {
            Some(shared) if shared.lock().flushing => Err(gst::FlowError::Flushing),
            Some(_) => Ok(gst::FlowSuccess::Ok),
            None => Err(gst::FlowError::Flushing),
        }
    }

    fn handle_yield(&self, request: Yield) -> bool {
        let mut input = lock(&self.input);
        if let Some(id) = request.utterance_id
            && id != input.utterance
        {
            gst::debug!(
                CAT,
                imp = self,
                "Yield for utterance {id} ignored: not current"
            );
            return true;
        }
        input.open = false;
        input.splitter = PhraseSplitter::new(lock(&self.settings).split_config());
        input.utf8 = Utf8Stream::default();
        drop(input);
        let Some(shared) = self.shared() else {
            return true;
        };
        let live = lock(&self.settings).is_live;
        let now = if live {
            self.obj().current_running_time()
        } else {
            None
        };
        let mut queue = shared.lock();
        queue.jobs.clear();
        queue.epoch += 1;
        let at = match (request.running_time, now) {
            (Some(at), _) => Some(at),
            (None, now) => now,
        };
        gst::debug!(CAT, imp = self, "Yield at {}", at.display());
        queue.pending_yield = Some(YieldRequest {
            epoch: queue.epoch,
            at,
        });
        drop(queue);
        shared.changed.notify_all();
        true
    }

    fn handle_backchannel(&self, request: Backchannel) -> bool {
        let Some(shared) = self.shared() else {
            return true;
        };
        let mut queue = shared.lock();
        if !queue.idle() {
            gst::debug!(CAT, imp = self, "Back-channel ignored while speaking");
            return true;
        }
        let epoch = queue.epoch;
        queue.jobs.push_back(Job {
            epoch,
            utterance: None,
            not_before: None,
            kind: JobKind::Backchannel(request.text),
        });
        drop(queue);
        shared.changed.notify_all();
        true
    }

    /// *pause* (live only): go silent within one buffer, keep everything.
    fn handle_pause(&self, request: Pause) -> bool {
        let input = lock(&self.input);
        if request
            .utterance_id
            .is_some_and(|id| id != input.utterance || !input.any_utterance)
        {
            gst::debug!(CAT, imp = self, "Pause {request:?} ignored: not current");
            return true;
        }
        drop(input);
        if !lock(&self.settings).is_live {
            gst::debug!(CAT, imp = self, "Pause ignored: not live");
            return true;
        }
        let Some(shared) = self.shared() else {
            return true;
        };
        let mut queue = shared.lock();
        if queue.paused.is_none() {
            let until = request.max_duration.map(|d| queue.position() + d);
            gst::debug!(
                CAT,
                imp = self,
                "Pause at {} until {}",
                queue.position(),
                until.display()
            );
            queue.paused = Some(PauseState {
                until,
                faded: false,
            });
        }
        drop(queue);
        shared.changed.notify_all();
        true
    }

    /// *resume*: the paused output fades back in where it stopped.
    fn handle_resume(&self, request: Resume) -> bool {
        let input = lock(&self.input);
        if request.utterance_id.is_some_and(|id| id != input.utterance) {
            gst::debug!(CAT, imp = self, "Resume {request:?} ignored: not current");
            return true;
        }
        drop(input);
        let fade = {
            let settings = lock(&self.settings);
            settings.fade_duration_ms
        };
        let Some(shared) = self.shared() else {
            return true;
        };
        let mut queue = shared.lock();
        if let Some(pause) = queue.paused.take()
            && pause.faded
        {
            let samples = fade_samples(queue.sample_rate, fade);
            queue.fade_in_left = samples;
            queue.fade_in_length = samples;
        }
        gst::debug!(CAT, imp = self, "Resume at {}", queue.position());
        drop(queue);
        shared.changed.notify_all();
        true
    }

    /// Queues the phrases of a *prepare* event, split as text would be, for the phrase cache.
    /// Of a `partial` one's last line only the phrases the splitter knows to be complete.
    fn handle_prepare(&self, request: Prepare) -> bool {
        let Some(shared) = self.shared() else {
            return true;
        };
        let config = lock(&self.settings).split_config();
        let texts = text::phrases_to_prepare(config, &request.phrases, request.partial);
        if texts.is_empty() {
            return true;
        }
        gst::debug!(CAT, imp = self, "Preparing {texts:?}");
        let mut queue = shared.lock();
        let epoch = queue.epoch;
        queue.jobs.push_back(Job {
            epoch,
            utterance: None,
            not_before: None,
            kind: JobKind::Prepare(texts),
        });
        drop(queue);
        shared.changed.notify_all();
        true
    }

    fn flush_start(&self) {
        if let Some(shared) = self.shared() {
            let mut queue = shared.lock();
            queue.flushing = true;
            queue.epoch += 1;
            if let Some(progress) = queue.interrupted_progress() {
                queue.after_flush.push(progress);
            }
            queue.jobs.clear();
            queue.audio.clear();
            queue.pending_yield = None;
            queue.paused = None;
            queue.fade_in_left = 0;
            queue.unschedule();
            drop(queue);
            shared.changed.notify_all();
        }
    }

    fn flush_stop(&self) -> Vec<Progress> {
        let config = lock(&self.settings).split_config();
        {
            let mut input = lock(&self.input);
            let utterance = input.utterance;
            let any = input.any_utterance;
            *input = Input::new(config);
            input.utterance = utterance;
            input.any_utterance = any;
        }
        {
            let mut output = lock(&self.output);
            output.need_segment = true;
            output.discont = true;
        }
        let Some(shared) = self.shared() else {
            return Vec::new();
        };
        let mut queue = shared.lock();
        queue.flushing = false;
        queue.input_eos = false;
        queue.origin = None;
        queue.samples_out = 0;
        queue.heard = None;
        queue.completed = false;
        queue.announced = None;
        std::mem::take(&mut queue.after_flush)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "Handling event {:?}", event);
        if let Some(speak) = Speak::parse(&event) {
            let mut input = lock(&self.input);
            if input.open {
                self.end_utterance(&mut input);
            }
            self.open_utterance(&mut input, Some(speak.utterance_id));
            return true;
        }
        if let Some(request) = Yield::parse(&event) {
            return self.handle_yield(request);
        }
        if let Some(request) = Backchannel::parse(&event) {
            return self.handle_backchannel(request);
        }
        if let Some(request) = Prepare::parse(&event) {
            return self.handle_prepare(request);
        }
        if let Some(request) = Pause::parse(&event) {
            return self.handle_pause(request);
        }
        if let Some(request) = Resume::parse(&event) {
            return self.handle_resume(request);
        }
        match event.view() {
            EventView::StreamStart(_) | EventView::Caps(_) => true,
            EventView::Segment(segment) => {
                match segment.segment().downcast_ref::<gst::ClockTime>() {
                    Some(segment) => lock(&self.input).segment = segment.clone(),
                    None => {
                        gst::debug!(CAT, imp = self, "Non-TIME text segment: timestamps ignored");
                        lock(&self.input).segment = gst::FormattedSegment::new();
                    }
                }
                true
            }
            EventView::Gap(_) => {
                let mut input = lock(&self.input);
                let phrases = input.splitter.finish();
                if !phrases.is_empty() {
                    self.enqueue(&mut input, phrases, false);
                }
                true
            }
            EventView::Eos(_) => {
                let mut input = lock(&self.input);
                if input.open {
                    self.end_utterance(&mut input);
                }
                drop(input);
                if let Some(shared) = self.shared() {
                    shared.lock().input_eos = true;
                    shared.changed.notify_all();
                }
                true
            }
            EventView::FlushStart(_) => {
                self.flush_start();
                let forwarded = self.srcpad.push_event(event);
                if let Err(error) = self.srcpad.pause_task() {
                    gst::warning!(CAT, imp = self, "Could not pause the task: {error}");
                }
                forwarded
            }
            EventView::FlushStop(_) => {
                let progress = self.flush_stop();
                let forwarded = self.srcpad.push_event(event);
                for progress in progress {
                    self.report(&progress);
                }
                if self.shared().is_some()
                    && let Err(error) = self.start_task()
                {
                    gst::error!(CAT, imp = self, "Could not restart the task: {error}");
                }
                forwarded
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// Sends a progress upstream and posts it on the bus.
    fn report(&self, progress: &Progress) {
        gst::debug!(CAT, imp = self, "Progress {:?}", progress);
        let _ = self.obj().post_message(progress.to_message(&*self.obj()));
        if !self.sinkpad.push_event(progress.to_event()) {
            gst::log!(CAT, imp = self, "Nobody upstream took the progress event");
        }
    }

    fn post(&self, structure: gst::Structure) {
        let _ = self.obj().post_message(
            gst::message::Element::builder(structure)
                .src(&*self.obj())
                .build(),
        );
    }

    // ---- the source task ------------------------------------------------------------------

    fn src_loop(&self) {
        match self.produce() {
            Ok(()) => {}
            Err(gst::FlowError::Flushing) => {
                gst::debug!(CAT, imp = self, "Flushing: pausing the task");
                let _ = self.srcpad.pause_task();
            }
            Err(gst::FlowError::Eos) => {
                gst::debug!(CAT, imp = self, "EOS: pausing the task");
                let _ = self.srcpad.pause_task();
            }
            Err(flow) => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["Streaming stopped, reason {flow:?}"]
                );
                let _ = self.srcpad.push_event(gst::event::Eos::new());
                let _ = self.srcpad.pause_task();
            }
        }
    }

    /// Sends the sticky events a new stream needs.
    fn prepare_output(&self, sample_rate: u32) -> Result<gst_audio::AudioFormat, gst::FlowError> {
        let mut output = lock(&self.output);
        if output.need_stream_start {
            let stream_id = self.srcpad.create_stream_id(&*self.obj(), Some("audio"));
            drop(output);
            self.srcpad
                .push_event(gst::event::StreamStart::builder(stream_id.as_str()).build());
            output = lock(&self.output);
            output.need_stream_start = false;
        }
        if output.need_caps || output.format.is_none() {
            let ours = gst_audio::AudioCapsBuilder::new_interleaved()
                .format_list([gst_audio::AudioFormat::S16le, gst_audio::AudioFormat::F32le])
                .rate(sample_rate as i32)
                .channels(1)
                .build();
            drop(output);
            let mut caps = self.srcpad.peer_query_caps(Some(&ours));
            if caps.is_empty() {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ["Downstream takes neither S16LE nor F32LE mono at {sample_rate} Hz"]
                );
                return Err(gst::FlowError::NotNegotiated);
            }
            caps.fixate();
            let info = gst_audio::AudioInfo::from_caps(&caps).map_err(|_| {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ["Bad caps {caps}"]);
                gst::FlowError::NotNegotiated
            })?;
            self.srcpad.push_event(gst::event::Caps::new(&caps));
            output = lock(&self.output);
            output.format = Some(info.format());
            output.need_caps = false;
        }
        if output.need_segment {
            drop(output);
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            self.srcpad.push_event(gst::event::Segment::new(&segment));
            output = lock(&self.output);
            output.need_segment = false;
        }
        output.format.ok_or(gst::FlowError::NotNegotiated)
    }

    fn produce(&self) -> Result<(), gst::FlowError> {
        let Some(shared) = self.shared() else {
            return Err(gst::FlowError::Flushing);
        };
        let settings = self.settings();
        let sample_rate = {
            let mut queue = shared.lock();
            loop {
                if queue.flushing || queue.shutdown {
                    return Err(gst::FlowError::Flushing);
                }
                if queue.failed {
                    return Err(gst::FlowError::Error);
                }
                if settings.is_live && !queue.playing {
                    queue = shared
                        .changed
                        .wait(queue)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    continue;
                }
                break;
            }
            if queue.origin.is_none() {
                queue.origin = if settings.is_live {
                    Some(
                        self.obj()
                            .current_running_time()
                            .unwrap_or(gst::ClockTime::ZERO),
                    )
                } else {
                    Some(gst::ClockTime::ZERO)
                };
            }
            queue.sample_rate
        };
        let format = self.prepare_output(sample_rate)?;

        if settings.is_live && !self.wait_for_clock(&shared)? {
            return Ok(());
        }

        let block = ((u64::from(sample_rate) * u64::from(settings.buffer_duration_ms)) / 1000)
            .max(1) as usize;
        let fade = fade_samples(sample_rate, settings.fade_duration_ms).min(block);

        let (action, pts, start_sample, end_sample, end_time) = {
            let mut queue = shared.lock();
            loop {
                if queue.flushing || queue.shutdown {
                    return Err(gst::FlowError::Flushing);
                }
                let action = self.next_action(&mut queue, settings.is_live, block, fade);
                if matches!(action, Action::Wait) {
                    queue = shared
                        .changed
                        .wait(queue)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    continue;
                }
                let start = queue.samples_out;
                let pts = queue.position();
                if let Action::Buffer { samples, .. } = &action {
                    queue.samples_out += samples.len() as u64;
                }
                let end = queue.samples_out;
                let end_time = queue.position();
                break (action, pts, start, end, end_time);
            }
        };
        shared.changed.notify_all();

        match action {
            Action::Wait => Ok(()),
            Action::Eos => {
                gst::debug!(CAT, imp = self, "All text spoken: EOS");
                self.srcpad.push_event(gst::event::Eos::new());
                Err(gst::FlowError::Eos)
            }
            Action::Progress(progress) => {
                for progress in &progress {
                    self.report(progress);
                }
                Ok(())
            }
            Action::Buffer {
                samples,
                progress,
                started,
                yielded,
            } => {
                if let Some((utterance, time)) = started {
                    let mut structure =
                        events::message_structure(messages::AGENT_STARTED_SPEAKING, time);
                    structure.set("utterance-id", utterance);
                    self.post(structure);
                }
                let buffer = self.make_buffer(
                    &samples,
                    format,
                    settings.volume as f32,
                    pts,
                    end_time,
                    start_sample,
                    end_sample,
                )?;
                let result = if samples.is_empty() {
                    Ok(gst::FlowSuccess::Ok)
                } else {
                    self.srcpad.push(buffer)
                };
                for progress in &progress {
                    self.report(progress);
                    if yielded {
                        let mut structure = events::message_structure(
                            messages::AGENT_YIELDED,
                            progress.running_time,
                        );
                        structure.set("utterance-id", progress.utterance_id);
                        structure.set("characters", progress.characters);
                        self.post(structure);
                    }
                }
                result.map(|_| ())
            }
        }
    }

    /// Live: waits until the running time of the next buffer has come on the clock. `false`
    /// when the wait was cut short by a pause (the caller tries again).
    fn wait_for_clock(&self, shared: &Shared) -> Result<bool, gst::FlowError> {
        let element = self.obj();
        let Some(clock) = element.clock() else {
            return Ok(true);
        };
        let base = element.base_time().unwrap_or(gst::ClockTime::ZERO);
        let wait = {
            let mut queue = shared.lock();
            if queue.flushing || queue.shutdown {
                return Err(gst::FlowError::Flushing);
            }
            if !queue.playing {
                return Ok(false);
            }
            let wait = clock.new_single_shot_id(base + queue.position());
            queue.clock_wait = Some(wait.clone());
            wait
        };
        let (result, _) = wait.wait();
        let mut queue = shared.lock();
        queue.clock_wait = None;
        if queue.flushing || queue.shutdown {
            return Err(gst::FlowError::Flushing);
        }
        Ok(match result {
            Ok(_) | Err(gst::ClockError::Early) => true,
            Err(error) => {
                gst::debug!(CAT, imp = self, "Clock wait ended with {error:?}");
                queue.playing
            }
        })
    }

    /// Decides the next buffer (or event) with the queue locked. Never blocks.
    fn next_action(&self, queue: &mut Queue, live: bool, block: usize, fade: usize) -> Action {
        let rate = u64::from(queue.sample_rate.max(1));
        let position = queue.position();
        let samples_to_time = |n: usize| {
            gst::ClockTime::SECOND
                .mul_div_floor(n as u64, rate)
                .unwrap_or(gst::ClockTime::ZERO)
        };

        // A yield whose time has come: fade what plays out within one buffer, drop the rest.
        if let Some(request) = queue.pending_yield
            && request.at.is_none_or(|at| at <= position)
        {
            queue.pending_yield = None;
            // A paused output is silent already: nothing to fade.
            let silent = queue.paused.take().is_some_and(|pause| pause.faded);
            queue.fade_in_left = 0;
            let mut samples = Vec::new();
            let mut heard = queue.heard;
            let mut faded = 0;
            if !silent
                && let Some(chunk) = queue
                    .audio
                    .iter_mut()
                    .find(|chunk| chunk.epoch < request.epoch && chunk.position < chunk.available())
            {
                faded = chunk.fade_out(fade, &mut samples);
                if let Some(now) = chunk.heard_at(chunk.position) {
                    heard = Some(now);
                }
            }
            queue.audio.retain(|chunk| chunk.epoch >= request.epoch);
            if live {
                samples.resize(block, 0.0);
            }
            queue.heard = heard;
            let progress = queue.interrupted_progress().map(|mut progress| {
                progress.running_time = position + samples_to_time(faded);
                progress
            });
            queue.completed = true;
            return Action::Buffer {
                samples,
                progress: progress.into_iter().collect(),
                started: None,
                yielded: true,
            };
        }

        // A pause: fade out what plays within this buffer, then silence until a resume, a yield
        // or its end.
        if let Some(pause) = queue.paused
            && pause.until.is_some_and(|until| until <= position)
        {
            queue.paused = None;
            if pause.faded {
                queue.fade_in_left = fade;
                queue.fade_in_length = fade;
            }
        }
        if let Some(pause) = queue.paused.as_mut() {
            let mut samples = Vec::new();
            if !pause.faded {
                pause.faded = true;
                let mut heard = queue.heard;
                if let Some(chunk) = queue.audio.front_mut()
                    && chunk.position > 0
                    && chunk.position < chunk.available()
                {
                    chunk.fade_out(fade, &mut samples);
                    if let Some(now) = chunk.heard_at(chunk.position) {
                        heard = Some(now);
                    }
                }
                queue.heard = heard;
            }
            samples.resize(block, 0.0);
            return Action::Buffer {
                samples,
                progress: Vec::new(),
                started: None,
                yielded: false,
            };
        }

        let mut progress = Vec::new();
        while let Some(chunk) = queue.audio.front_mut() {
            if chunk.finished() {
                let chunk = queue.audio.pop_front().expect("front exists");
                // A phrase with nothing to say (emoji, punctuation) still counts as heard.
                if chunk.total == 0
                    && let Some(heard) = chunk.heard_at(0)
                {
                    progress.push(Progress {
                        utterance_id: heard.utterance,
                        characters: heard.characters,
                        bytes: heard.bytes,
                        running_time: position,
                        reason: ProgressReason::Phrase,
                    });
                    if queue
                        .heard
                        .is_none_or(|old| old.utterance != heard.utterance)
                    {
                        queue.completed = false;
                    }
                    queue.heard = Some(heard);
                }
                if chunk.end_marker
                    && let Some(utterance) = chunk.utterance
                {
                    let heard = queue
                        .heard
                        .filter(|heard| heard.utterance == utterance)
                        .unwrap_or(Heard {
                            utterance,
                            characters: 0,
                            bytes: 0,
                        });
                    progress.push(Progress {
                        utterance_id: utterance,
                        characters: heard.characters,
                        bytes: heard.bytes,
                        running_time: position,
                        reason: ProgressReason::Completed,
                    });
                    queue.completed = true;
                }
                continue;
            }
            // Not before its time: silence up to it.
            if chunk.position == 0
                && let Some(not_before) = chunk.not_before
                && not_before > position
            {
                let gap =
                    (not_before - position).mul_div_floor(rate, gst::ClockTime::SECOND.nseconds());
                let gap = gap
                    .map_or(block, |gap| gap.nseconds() as usize)
                    .clamp(1, block);
                return Action::Buffer {
                    samples: vec![0.0; gap],
                    progress,
                    started: None,
                    yielded: false,
                };
            }
            let start = chunk.position;
            let count = block.min(chunk.available() - start);
            if count == 0 {
                // The worker is still decoding this phrase: an underrun.
                if !progress.is_empty() {
                    return Action::Progress(progress);
                }
                return if live {
                    Action::Buffer {
                        samples: vec![0.0; block],
                        progress,
                        started: None,
                        yielded: false,
                    }
                } else {
                    Action::Wait
                };
            }
            let mut samples: Vec<f32> = (start..start + count).map(|i| chunk.sample(i)).collect();
            chunk.position += count;
            // After a resume: fade back in.
            for sample in samples.iter_mut().take(queue.fade_in_left) {
                let done = queue.fade_in_length - queue.fade_in_left + 1;
                let gain = done as f32 / queue.fade_in_length as f32;
                *sample *= gain * gain;
                queue.fade_in_left -= 1;
            }
            let speech_end = chunk.speech.len();
            let mut started = None;
            if let Some(utterance) = chunk.utterance
                && queue.announced != Some(utterance)
                && chunk.phrase.is_some()
                && !chunk.speech.is_empty()
            {
                started = Some((utterance, position));
            }
            let phrase_done = chunk.complete && start <= speech_end && speech_end <= start + count;
            let heard = chunk.heard_at(chunk.position);
            if phrase_done && let Some(heard) = heard {
                progress.push(Progress {
                    utterance_id: heard.utterance,
                    characters: heard.characters,
                    bytes: heard.bytes,
                    running_time: position + samples_to_time(speech_end - start),
                    reason: ProgressReason::Phrase,
                });
            }
            if let Some(heard) = heard {
                if queue
                    .heard
                    .is_none_or(|old| old.utterance != heard.utterance)
                {
                    queue.completed = false;
                }
                queue.heard = Some(heard);
            }
            if let Some((utterance, _)) = started {
                queue.announced = Some(utterance);
            }
            return Action::Buffer {
                samples,
                progress,
                started,
                yielded: false,
            };
        }
        if !progress.is_empty() {
            return Action::Progress(progress);
        }
        if queue.input_eos && queue.idle() {
            return Action::Eos;
        }
        if live {
            return Action::Buffer {
                samples: vec![0.0; block],
                progress: Vec::new(),
                started: None,
                yielded: false,
            };
        }
        Action::Wait
    }

    #[allow(clippy::too_many_arguments)]
    fn make_buffer(
        &self,
        samples: &[f32],
        format: gst_audio::AudioFormat,
        volume: f32,
        pts: gst::ClockTime,
        end: gst::ClockTime,
        start_sample: u64,
        end_sample: u64,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let bytes: Vec<u8> = match format {
            gst_audio::AudioFormat::F32le => samples
                .iter()
                .flat_map(|s| (s * volume).to_le_bytes())
                .collect(),
            _ => samples
                .iter()
                .flat_map(|s| {
                    (((s * volume).clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()
                })
                .collect(),
        };
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_pts(pts);
            buffer.set_duration(end.saturating_sub(pts));
            buffer.set_offset(start_sample);
            buffer.set_offset_end(end_sample);
            let mut output = lock(&self.output);
            if output.discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
                output.discont = false;
            }
            if samples.iter().all(|&s| s == 0.0) {
                buffer.set_flags(gst::BufferFlags::GAP);
            }
        }
        Ok(buffer)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Latency(latency) => {
                let settings = self.settings();
                if settings.is_live {
                    let buffer =
                        gst::ClockTime::from_mseconds(u64::from(settings.buffer_duration_ms));
                    latency.set(true, buffer, Some(buffer));
                } else {
                    latency.set(false, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                }
                true
            }
            QueryViewMut::Caps(caps) => {
                let rate = self.shared().map(|shared| shared.lock().sample_rate as i32);
                let mut builder = gst_audio::AudioCapsBuilder::new_interleaved()
                    .format_list([gst_audio::AudioFormat::S16le, gst_audio::AudioFormat::F32le])
                    .channels(1);
                builder = match rate {
                    Some(rate) => builder.rate(rate),
                    None => builder.rate_range(1..=i32::MAX),
                };
                let ours = builder.build();
                let result = match caps.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&ours, gst::CapsIntersectMode::First)
                    }
                    None => ours,
                };
                caps.set_result(&result);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Seek(_) => {
                gst::debug!(CAT, imp = self, "Seeking is not supported");
                false
            }
            gst::EventView::Reconfigure(_) => {
                lock(&self.output).need_caps = true;
                true
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }
}

/// Delivers a phrase into its chunk in the audio queue as the voice makes it.
struct ChunkSink<'a> {
    shared: &'a Shared,
    id: u64,
    epoch: u64,
}

impl SynthesisSink for ChunkSink<'_> {
    fn word_ends(&mut self, ends: Vec<usize>) {
        let mut queue = self.shared.lock();
        if let Some(chunk) = queue.audio.iter_mut().find(|chunk| chunk.id == self.id) {
            chunk.word_ends = Some(ends);
        }
    }

    fn audio(&mut self, samples: &[f32]) -> bool {
        let mut queue = self.shared.lock();
        if queue.epoch != self.epoch || queue.flushing || queue.shutdown {
            return false;
        }
        let Some(chunk) = queue.audio.iter_mut().find(|chunk| chunk.id == self.id) else {
            return false;
        };
        chunk.speech.extend_from_slice(samples);
        drop(queue);
        self.shared.changed.notify_all();
        true
    }
}

/// Synthesises jobs until shutdown. Owns the voice.
fn worker_loop(
    element: glib::WeakRef<super::SpeechSynth>,
    settings: Arc<Mutex<Settings>>,
    shared: Arc<Shared>,
    mut voice: Box<dyn Voice>,
) {
    let rate = voice.sample_rate();
    let max_ahead = u64::from(rate) * MAX_AUDIO_AHEAD_SECONDS;
    let mut next_id = 0u64;
    loop {
        let job = {
            let mut queue = shared.lock();
            loop {
                if queue.shutdown {
                    return;
                }
                if !queue.flushing
                    && !queue.failed
                    && !queue.jobs.is_empty()
                    && queue.audio_ahead() < max_ahead
                    && let Some(job) = queue.jobs.pop_front()
                {
                    queue.synthesizing = true;
                    break job;
                }
                queue = shared
                    .changed
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let settings = lock(&settings).clone();
        let started = std::time::Instant::now();
        let (text, phrase, silence_ms, end_marker) = match job.kind {
            JobKind::Prepare(phrases) => {
                let epoch = job.epoch;
                prepare_phrases(&element, &shared, voice.as_mut(), &settings, epoch, phrases);
                continue;
            }
            JobKind::Phrase { phrase, silence_ms } => {
                (speakable(&phrase.text), Some(phrase), silence_ms, false)
            }
            JobKind::End => (None, None, 0, true),
            JobKind::Backchannel(text) => (speakable(&text), None, 0, false),
        };
        let description = phrase.as_ref().map(|p| p.text.clone());
        next_id += 1;
        let id = next_id;
        {
            let mut queue = shared.lock();
            if job.epoch != queue.epoch || queue.flushing {
                queue.synthesizing = false;
                drop(queue);
                shared.changed.notify_all();
                continue;
            }
            queue.audio.push_back(Chunk {
                id,
                epoch: job.epoch,
                utterance: job.utterance,
                phrase,
                not_before: job.not_before,
                speech: Vec::new(),
                total: 0,
                voiced: (0, 0),
                position: 0,
                end_marker,
                complete: false,
                word_ends: None,
            });
        }
        let result = match text {
            Some(text) => voice.synthesize(
                &text,
                &settings.params(),
                &mut ChunkSink {
                    shared: &shared,
                    id,
                    epoch: job.epoch,
                },
            ),
            None => Ok(()),
        };
        if let Err(error) = result {
            if let Some(element) = element.upgrade() {
                gst::element_error!(
                    element,
                    gst::StreamError::Failed,
                    ["Speech synthesis failed on {:?}: {}", description, error]
                );
            }
            let mut queue = shared.lock();
            queue.audio.retain(|chunk| chunk.id != id);
            queue.synthesizing = false;
            queue.failed = true;
            drop(queue);
            shared.changed.notify_all();
            continue;
        }
        let mut queue = shared.lock();
        queue.synthesizing = false;
        if let Some(chunk) = queue.audio.iter_mut().find(|chunk| chunk.id == id) {
            let silence = if chunk.speech.is_empty() {
                0
            } else {
                (u64::from(rate) * u64::from(silence_ms) / 1000) as usize
            };
            chunk.total = chunk.speech.len() + silence;
            chunk.voiced = voiced_range(&chunk.speech);
            chunk.complete = true;
            if let Some(element) = element.upgrade() {
                gst::debug!(
                    CAT,
                    obj = element,
                    "Synthesised {} samples in {:.1} ms: {:?}",
                    chunk.speech.len(),
                    started.elapsed().as_secs_f64() * 1000.0,
                    description
                );
            }
        }
        drop(queue);
        shared.changed.notify_all();
    }
}

/// Samples of a fade of `ms` milliseconds at `sample_rate` (at least one).
fn fade_samples(sample_rate: u32, ms: u32) -> usize {
    ((u64::from(sample_rate) * u64::from(ms)) / 1000).max(1) as usize
}

/// Synthesises *prepare* phrases into the voice's phrase cache, one at a time, and gives way
/// as soon as real work is queued: the rest goes to the back of the queue.
fn prepare_phrases(
    element: &glib::WeakRef<super::SpeechSynth>,
    shared: &Shared,
    voice: &mut dyn Voice,
    settings: &Settings,
    epoch: u64,
    phrases: Vec<String>,
) {
    let params = settings.params();
    let mut left = phrases.into_iter();
    while let Some(phrase) = left.next() {
        let started = std::time::Instant::now();
        let kept = speakable(&phrase).map(|text| voice.prepare(&text, &params));
        if let Some(element) = element.upgrade() {
            gst::debug!(
                CAT,
                obj = element,
                "Prepared {phrase:?} in {:.1} ms: {kept:?}",
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        let mut queue = shared.lock();
        if !queue.jobs.is_empty() {
            let rest: Vec<String> = left.by_ref().collect();
            if !rest.is_empty() {
                queue.jobs.push_back(Job {
                    epoch,
                    utterance: None,
                    not_before: None,
                    kind: JobKind::Prepare(rest),
                });
            }
        }
        if queue
            .jobs
            .iter()
            .any(|j| !matches!(j.kind, JobKind::Prepare(_)))
        {
            break;
        }
    }
    let mut queue = shared.lock();
    queue.synthesizing = false;
    drop(queue);
    shared.changed.notify_all();
}

/// The first and last sample louder than 2% of the peak (the voiced part of a phrase).
fn voiced_range(speech: &[f32]) -> (usize, usize) {
    let peak = speech.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak <= 0.0 {
        return (0, speech.len());
    }
    let floor = peak * 0.02;
    let first = speech.iter().position(|s| s.abs() > floor).unwrap_or(0);
    let last = speech
        .iter()
        .rposition(|s| s.abs() > floor)
        .map_or(speech.len(), |i| i + 1);
    (first, last)
}

#[glib::object_subclass]
impl ObjectSubclass for SpeechSynth {
    const NAME: &'static str = "GstSpeechSynth";
    type Type = super::SpeechSynth;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").expect("sink"))
            .chain_function(|_pad, parent, buffer| {
                SpeechSynth::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                SpeechSynth::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").expect("src"))
            .query_function(|pad, parent, query| {
                SpeechSynth::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .event_function(|pad, parent, event| {
                SpeechSynth::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Arc::new(Mutex::new(Settings::default())),
            input: Mutex::new(Input::new(SplitConfig::default())),
            shared: Mutex::new(None),
            output: Mutex::new(Output::default()),
            worker: Mutex::new(None),
        }
    }
}

impl ObjectImpl for SpeechSynth {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("backend", Backend::default())
                    .nick("Backend")
                    .blurb("piper: a Piper VITS voice through ONNX Runtime; espeak: espeak-ng alone")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("voice")
                    .nick("Voice")
                    .blurb(
                        "piper: path of a Piper voice .onnx (with its .onnx.json beside it; \
                         default: the cached en_US-joe-medium); espeak: an espeak-ng voice \
                         name (default: en-us)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("rate")
                    .nick("Speaking rate")
                    .blurb("1.0 is the voice's own pace, 2.0 twice as fast")
                    .minimum(0.25)
                    .maximum(4.0)
                    .default_value(DEFAULT_RATE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("volume")
                    .nick("Volume")
                    .blurb("Linear gain applied to the output")
                    .minimum(0.0)
                    .maximum(10.0)
                    .default_value(DEFAULT_VOLUME)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("sentence-silence")
                    .nick("Sentence silence")
                    .blurb("Milliseconds of silence after each sentence")
                    .maximum(10_000)
                    .default_value(DEFAULT_SENTENCE_SILENCE_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("buffer-duration")
                    .nick("Buffer duration")
                    .blurb("Milliseconds of audio per output buffer; a yield stops within one")
                    .minimum(2)
                    .maximum(20)
                    .default_value(DEFAULT_BUFFER_DURATION_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("fade-duration")
                    .nick("Fade duration")
                    .blurb("Milliseconds of the fade-out on a yield (at most one buffer)")
                    .minimum(1)
                    .maximum(20)
                    .default_value(DEFAULT_FADE_DURATION_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("Follow the pipeline clock and fill the time between utterances with silence")
                    .default_value(DEFAULT_IS_LIVE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("first-phrase-words")
                    .nick("First phrase words")
                    .blurb(
                        "When > 0, cut the first phrase of an utterance after this many words \
                         (sooner first audio, slightly flatter prosody)",
                    )
                    .maximum(100)
                    .default_value(DEFAULT_FIRST_PHRASE_WORDS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("noise-scale")
                    .nick("Noise scale")
                    .blurb("Piper voice variation; -1 takes the voice's default")
                    .minimum(-1.0)
                    .maximum(2.0)
                    .default_value(DEFAULT_NOISE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("noise-w")
                    .nick("Noise w")
                    .blurb("Piper phoneme duration variation; -1 takes the voice's default")
                    .minimum(-1.0)
                    .maximum(2.0)
                    .default_value(DEFAULT_NOISE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads for Piper; 0 lets ONNX Runtime decide")
                    .maximum(64)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "backend" => settings.backend = value.get().expect("type checked upstream"),
            "voice" => settings.voice = value.get().expect("type checked upstream"),
            "rate" => settings.rate = value.get().expect("type checked upstream"),
            "volume" => settings.volume = value.get().expect("type checked upstream"),
            "sentence-silence" => {
                settings.sentence_silence_ms = value.get().expect("type checked upstream")
            }
            "buffer-duration" => {
                settings.buffer_duration_ms = value.get().expect("type checked upstream")
            }
            "fade-duration" => {
                settings.fade_duration_ms = value.get().expect("type checked upstream")
            }
            "is-live" => settings.is_live = value.get().expect("type checked upstream"),
            "first-phrase-words" => {
                settings.first_phrase_words = value.get().expect("type checked upstream")
            }
            "noise-scale" => settings.noise_scale = value.get().expect("type checked upstream"),
            "noise-w" => settings.noise_w = value.get().expect("type checked upstream"),
            "threads" => settings.threads = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
        let latency_changed = matches!(pspec.name(), "buffer-duration" | "is-live");
        drop(settings);
        if latency_changed {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "backend" => settings.backend.to_value(),
            "voice" => settings.voice.to_value(),
            "rate" => settings.rate.to_value(),
            "volume" => settings.volume.to_value(),
            "sentence-silence" => settings.sentence_silence_ms.to_value(),
            "buffer-duration" => settings.buffer_duration_ms.to_value(),
            "fade-duration" => settings.fade_duration_ms.to_value(),
            "is-live" => settings.is_live.to_value(),
            "first-phrase-words" => settings.first_phrase_words.to_value(),
            "noise-scale" => settings.noise_scale.to_value(),
            "noise-w" => settings.noise_w.to_value(),
            "threads" => settings.threads.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("sink pad");
        obj.add_pad(&self.srcpad).expect("src pad");
    }
}

impl GstObjectImpl for SpeechSynth {}

impl ElementImpl for SpeechSynth {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Speech synthesizer",
                "Filter/Converter/Text/Audio",
                "Streaming, interruptible text-to-speech (Piper voices via ONNX Runtime, or \
                 espeak-ng)",
                "gst-interaction developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst::Caps::builder("text/x-raw")
                .field("format", "utf8")
                .build();
            let src_caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format_list([gst_audio::AudioFormat::S16le, gst_audio::AudioFormat::F32le])
                .channels(1)
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .expect("sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .expect("src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "Changing state {transition:?}");
        let live = lock(&self.settings).is_live;
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(error) = self.start() {
                    self.post_error_message(error);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => self.stop(),
            gst::StateChange::PlayingToPaused => {
                if let Some(shared) = self.shared() {
                    let mut queue = shared.lock();
                    queue.playing = false;
                    queue.unschedule();
                    drop(queue);
                    shared.changed.notify_all();
                }
            }
            _ => {}
        }
        let mut success = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(error) = self.start_task() {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Thread,
                        ["Cannot start the output task: {error}"]
                    );
                    self.stop();
                    return Err(gst::StateChangeError);
                }
                if live {
                    success = gst::StateChangeSuccess::NoPreroll;
                }
            }
            gst::StateChange::PausedToPlaying => {
                if let Some(shared) = self.shared() {
                    shared.lock().playing = true;
                    shared.changed.notify_all();
                }
            }
            gst::StateChange::PlayingToPaused if live => {
                success = gst::StateChangeSuccess::NoPreroll;
            }
            _ => {}
        }
        Ok(success)
    }
}
