//! Lock order: `settings` → `state` → `output.queue`. No lock is held across a push, a peer
//! query or a wait other than the output condition variable (which releases `output.queue`).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use interaction_protocol::context::{
    CONTEXT_CAPS, ContextPackage, ErrorKind, RESULT_CAPS, ReasoningResult,
};
use interaction_protocol::events::Yield;
use tokio::sync::Semaphore;

use super::{ReasoningBackend, ReasoningLocalRuntime};
use crate::backend::{self, Backend, Failure, OpenAiConfig, Request, ResultBuilder};
use crate::chat;
use crate::local::{self, LocalModel, LocalRuntime};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "reasoningsidecar",
        gst::DebugColorFlags::empty(),
        Some("Reasoning sidecar: background language model"),
    )
});

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant. Answer the user's last \
    message correctly in one or two short sentences.";
const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080/v1";
const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct";
const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
const DEFAULT_MAX_TOKENS: u32 = 128;
const DEFAULT_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_MAX_CONCURRENT: u32 = 1;
const DEFAULT_TEMPERATURE: f64 = 0.0;
const DEFAULT_SEED: u64 = 42;
const DEFAULT_SUPERSEDE: bool = true;
const DEFAULT_THREADS: u32 = 0;
/// How long stopping waits for cancelled requests to end: a local generation stops after the
/// forward pass it is in, which is one token, or the whole prompt when it is the first pass.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Settings {
    backend: ReasoningBackend,
    local_runtime: ReasoningLocalRuntime,
    model_path: Option<String>,
    base_url: String,
    model: String,
    api_key_env: String,
    system_prompt: String,
    system_prompt_file: Option<String>,
    max_tokens: u32,
    threads: u32,
    timeout_ms: u32,
    max_concurrent: u32,
    temperature: f64,
    seed: u64,
    supersede: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: ReasoningBackend::default(),
            local_runtime: ReasoningLocalRuntime::default(),
            model_path: None,
            base_url: DEFAULT_BASE_URL.into(),
            model: DEFAULT_MODEL_NAME.into(),
            api_key_env: DEFAULT_API_KEY_ENV.into(),
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            system_prompt_file: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            threads: DEFAULT_THREADS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            temperature: DEFAULT_TEMPERATURE,
            seed: DEFAULT_SEED,
            supersede: DEFAULT_SUPERSEDE,
        }
    }
}

/// What `start` resolved from the settings; replaced as a whole at every start.
struct Prepared {
    backend: PreparedBackend,
    system_prompt: String,
    limit: Arc<Semaphore>,
}

enum PreparedBackend {
    Local(Arc<LocalModel>),
    OpenAi {
        base_url: String,
        model: String,
        api_key_env: String,
    },
}

#[derive(Default)]
struct State {
    prepared: Option<Prepared>,
    /// Carried across stop/start on purpose: loading the model is the expensive part.
    model_cache: Option<(PathBuf, LocalRuntime, Arc<LocalModel>)>,
    /// The sink segment, when it is a TIME segment.
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
}

/// A request that is running.
struct Active {
    cancelled: Arc<AtomicBool>,
    abort: Option<tokio::task::AbortHandle>,
}

/// A result waiting for the src-pad task.
struct Pending {
    result: ReasoningResult,
    /// Running time of the request's context package: the timestamp when no clock runs.
    request_running_time: Option<gst::ClockTime>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Pending>,
    active: HashMap<u64, Active>,
    /// Tasks that have not ended yet (cancelled ones included, until they stop).
    in_flight: usize,
    newest: Option<u64>,
    eos_pending: bool,
    eos_sent: bool,
    flushing: bool,
    stream_started: bool,
}

/// Shared with the request tasks.
#[derive(Default)]
struct Output {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Decrements `in_flight` when a request has ended, however it ends: when its task ends, or,
/// when the task was aborted, once the backend has really stopped (a local generation's thread
/// decodes its current token first).
struct InFlight {
    output: Arc<Output>,
    request_id: u64,
    /// Tells this request's entry in `active` from a newer request's with the same id.
    cancelled: Arc<AtomicBool>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut queue = self.output.lock();
        queue.in_flight = queue.in_flight.saturating_sub(1);
        if queue
            .active
            .get(&self.request_id)
            .is_some_and(|active| Arc::ptr_eq(&active.cancelled, &self.cancelled))
        {
            queue.active.remove(&self.request_id);
        }
        drop(queue);
        self.output.changed.notify_all();
    }
}

pub struct ReasoningSidecar {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    output: Arc<Output>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ReasoningSidecar {
    // ---- setup -------------------------------------------------------------------------

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let system_prompt = match &settings.system_prompt_file {
            Some(path) if !path.is_empty() => std::fs::read_to_string(path).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("cannot read system-prompt-file {}: {}", path, err)
                )
            })?,
            _ => settings.system_prompt.clone(),
        };
        let backend = match settings.backend {
            ReasoningBackend::Local => PreparedBackend::Local(self.load_model(&settings)?),
            ReasoningBackend::OpenAi => {
                if !settings.base_url.starts_with("http://")
                    && !settings.base_url.starts_with("https://")
                {
                    return Err(gst::error_msg!(
                        gst::ResourceError::Settings,
                        (
                            "base-url {:?} is not an http:// or https:// URL",
                            settings.base_url
                        )
                    ));
                }
                PreparedBackend::OpenAi {
                    base_url: settings.base_url.clone(),
                    model: settings.model.clone(),
                    api_key_env: settings.api_key_env.clone(),
                }
            }
        };
        crate::runtime::runtime()
            .map_err(|err| gst::error_msg!(gst::CoreError::Failed, ("{}", err)))?;
        let mut state = lock(&self.state);
        state.prepared = Some(Prepared {
            backend,
            system_prompt,
            limit: Arc::new(Semaphore::new(settings.max_concurrent.max(1) as usize)),
        });
        state.segment = None;
        drop(state);
        let mut queue = self.output.lock();
        // Requests that outlived the last stop's wait still count: when they end, they take
        // themselves off this count, and EOS must not pass before they have.
        *queue = Queue {
            in_flight: queue.in_flight,
            ..Queue::default()
        };
        drop(queue);
        gst::info!(
            CAT,
            imp = self,
            "started with the {:?} backend",
            settings.backend
        );
        Ok(())
    }

    fn load_model(&self, settings: &Settings) -> Result<Arc<LocalModel>, gst::ErrorMessage> {
        let path = match &settings.model_path {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => interaction_runtime::model_file(local::DEFAULT_MODEL)
                .map_err(|err| gst::error_msg!(gst::ResourceError::NotFound, ("{}", err)))?,
        };
        let runtime = LocalRuntime::from(settings.local_runtime);
        if let Some((cached, cached_runtime, model)) = &lock(&self.state).model_cache
            && *cached == path
            && *cached_runtime == runtime
        {
            return Ok(model.clone());
        }
        gst::info!(
            CAT,
            imp = self,
            "loading {} with {}",
            path.display(),
            runtime.name()
        );
        let model = LocalModel::load(&path, runtime)
            .map(Arc::new)
            .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", err)))?;
        lock(&self.state).model_cache = Some((path, runtime, model.clone()));
        Ok(model)
    }

    /// Cancels every request and waits (up to [`STOP_WAIT`]) until their backends have
    /// stopped, so that no generation runs on after the element has left PAUSED.
    fn stop(&self) {
        self.cancel_all("stopping");
        let queue = self.output.lock();
        let (queue, waited) = self
            .output
            .changed
            .wait_timeout_while(queue, STOP_WAIT, |queue| queue.in_flight > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if waited.timed_out() {
            gst::warning!(
                CAT,
                imp = self,
                "{} cancelled requests still running after {} s",
                queue.in_flight,
                STOP_WAIT.as_secs()
            );
        }
        drop(queue);
        lock(&self.state).prepared = None;
    }

    // ---- requests ------------------------------------------------------------------------

    /// Cancels every running request and drops their queued results.
    fn cancel_all(&self, why: &str) {
        let mut queue = self.output.lock();
        if !queue.active.is_empty() {
            gst::debug!(
                CAT,
                imp = self,
                "cancelling {} requests: {why}",
                queue.active.len()
            );
        }
        for (_, active) in queue.active.drain() {
            active.cancelled.store(true, Ordering::Release);
            if let Some(abort) = active.abort {
                abort.abort();
            }
        }
        queue.items.clear();
        drop(queue);
        self.output.changed.notify_all();
    }

    /// Cancels the running requests older than `request_id` and drops their queued results
    /// (results of requests that already ended stay).
    fn supersede(queue: &mut Queue, request_id: u64) -> usize {
        let older: Vec<u64> = queue
            .active
            .keys()
            .copied()
            .filter(|id| *id < request_id)
            .collect();
        for id in &older {
            if let Some(active) = queue.active.remove(id) {
                active.cancelled.store(true, Ordering::Release);
                if let Some(abort) = active.abort {
                    abort.abort();
                }
            }
        }
        queue
            .items
            .retain(|pending| !older.contains(&pending.result.request_id));
        older.len()
    }

    fn start_request(
        &self,
        package: ContextPackage,
        request_running_time: Option<gst::ClockTime>,
    ) -> Result<(), gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let (backend, system_prompt, limit) = {
            let state = lock(&self.state);
            let Some(prepared) = &state.prepared else {
                return Err(gst::FlowError::Flushing);
            };
            let backend = match &prepared.backend {
                PreparedBackend::Local(model) => Backend::Local(model.clone()),
                PreparedBackend::OpenAi {
                    base_url,
                    model,
                    api_key_env,
                } => Backend::OpenAi(OpenAiConfig {
                    base_url: base_url.clone(),
                    model: model.clone(),
                    // Read when the request starts, so a rotated key is picked up; never logged.
                    api_key: std::env::var(api_key_env)
                        .ok()
                        .filter(|key| !key.is_empty()),
                }),
            };
            (
                backend,
                prepared.system_prompt.clone(),
                prepared.limit.clone(),
            )
        };
        let runtime = crate::runtime::runtime().map_err(|err| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["{}", err]);
            gst::FlowError::Error
        })?;
        let request = Request {
            id: package.request_id,
            messages: chat::messages_for(&package, &system_prompt),
            max_tokens: settings.max_tokens,
            temperature: settings.temperature,
            seed: settings.seed,
            timeout: Duration::from_millis(u64::from(settings.timeout_ms)),
            threads: settings.threads,
        };
        let request_id = request.id;

        let mut queue = self.output.lock();
        if queue.flushing {
            return Err(gst::FlowError::Flushing);
        }
        if settings.supersede && queue.newest.is_some_and(|newest| request_id <= newest) {
            gst::warning!(
                CAT,
                imp = self,
                "request {request_id} is not newer than request {:?}: ignored",
                queue.newest
            );
            return Ok(());
        }
        if queue.active.contains_key(&request_id) {
            gst::warning!(
                CAT,
                imp = self,
                "request {request_id} is already running: ignored"
            );
            return Ok(());
        }
        if settings.supersede {
            let cancelled = Self::supersede(&mut queue, request_id);
            if cancelled > 0 {
                gst::debug!(
                    CAT,
                    imp = self,
                    "request {request_id} superseded {cancelled}"
                );
            }
        }
        queue.newest = Some(
            queue
                .newest
                .map_or(request_id, |newest| newest.max(request_id)),
        );
        let cancelled = Arc::new(AtomicBool::new(false));
        queue.active.insert(
            request_id,
            Active {
                cancelled: cancelled.clone(),
                abort: None,
            },
        );
        queue.in_flight += 1;
        gst::debug!(
            CAT,
            imp = self,
            "request {request_id}: {} messages",
            request.messages.len()
        );

        let output = self.output.clone();
        let element = self.obj().downgrade();
        let emit_output = self.output.clone();
        let emit_cancelled = cancelled.clone();
        let emit = move |result: ReasoningResult| {
            let mut queue = emit_output.lock();
            // Checked under the lock that cancellation takes: nothing of a cancelled request
            // is queued after `cancel_all` or `supersede` cleared the queue.
            if emit_cancelled.load(Ordering::Acquire) {
                return;
            }
            queue.items.push_back(Pending {
                result,
                request_running_time,
            });
            drop(queue);
            emit_output.changed.notify_all();
        };
        let in_flight = InFlight {
            output,
            request_id,
            cancelled: cancelled.clone(),
        };
        let task = runtime.spawn(async move {
            let on_failure = |failure: &Failure| {
                if let Some(element) = element.upgrade()
                    && !cancelled.load(Ordering::Acquire)
                {
                    warn_failure(&element, request_id, failure);
                }
            };
            backend::run(backend, request, limit, in_flight, emit, on_failure).await;
        });
        if let Some(active) = queue.active.get_mut(&request_id) {
            active.abort = Some(task.abort_handle());
        }
        drop(queue);
        Ok(())
    }

    /// A context package that cannot be read still gets an answer: an error result.
    fn reject_package(&self, bytes: &[u8], reason: &str, running_time: Option<gst::ClockTime>) {
        let request_id = lenient_request_id(bytes).unwrap_or(0);
        let failure = Failure {
            kind: ErrorKind::BadRequest,
            detail: format!("cannot read the context package: {reason}"),
        };
        warn_failure(&self.obj(), request_id, &failure);
        let result = ResultBuilder::new(request_id).fail(failure.kind, failure.spoken());
        let mut queue = self.output.lock();
        queue.items.push_back(Pending {
            result,
            request_running_time: running_time,
        });
        drop(queue);
        self.output.changed.notify_all();
    }

    // ---- sink pad ------------------------------------------------------------------------

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let running_time = {
            let state = lock(&self.state);
            state
                .segment
                .as_ref()
                .and_then(|segment| segment.to_running_time(buffer.pts()))
        };
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ["cannot map a buffer"]);
            gst::FlowError::Error
        })?;
        match ContextPackage::parse(map.as_slice()) {
            Ok(package) => self.start_request(package, running_time)?,
            Err(err) => self.reject_package(map.as_slice(), &err.to_string(), running_time),
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "sink event {:?}", event.type_());
        if Yield::parse(&event).is_some() {
            self.cancel_all("yield");
            return true;
        }
        match event.view() {
            EventView::Caps(_) => true,
            EventView::Segment(segment) => {
                // Context packages need no timeline of their own: a TIME segment gives their
                // running time (the fallback timestamp of results); any other format (a file
                // read by `filesrc` is BYTES) leaves it unknown.
                let segment = segment.segment().downcast_ref::<gst::ClockTime>().cloned();
                if segment.is_none() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "non-TIME segment: packages have no running time"
                    );
                }
                lock(&self.state).segment = segment;
                true
            }
            EventView::Eos(_) => {
                self.output.lock().eos_pending = true;
                self.output.changed.notify_all();
                true
            }
            EventView::FlushStart(_) => {
                self.cancel_all("flush");
                true
            }
            EventView::FlushStop(_) => {
                lock(&self.state).segment = None;
                let mut queue = self.output.lock();
                let restart = queue.eos_sent;
                queue.eos_pending = false;
                queue.eos_sent = false;
                drop(queue);
                if restart {
                    self.start_task();
                }
                true
            }
            // Nothing is forwarded: the src pad makes its own stream, and a forwarded event
            // could go round a feedback loop.
            _ => true,
        }
    }

    fn sink_query(&self, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        let caps = gst::Caps::builder(CONTEXT_CAPS).build();
        match query.view_mut() {
            QueryViewMut::Caps(query) => {
                let result = match query.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First)
                    }
                    None => caps,
                };
                query.set_result(&result);
                true
            }
            QueryViewMut::AcceptCaps(query) => {
                let accepted = query.caps().can_intersect(&caps);
                query.set_result(accepted);
                true
            }
            QueryViewMut::Drain(_) => true,
            _ => false,
        }
    }

    // ---- src pad -------------------------------------------------------------------------

    fn src_query(&self, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        let caps = gst::Caps::builder(RESULT_CAPS).build();
        match query.view_mut() {
            // Live: a result is stamped with the running time it is pushed at, so it adds
            // nothing downstream has to wait for. Never asked upstream: that could be a loop.
            QueryViewMut::Latency(query) => {
                query.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                true
            }
            QueryViewMut::Caps(query) => {
                let result = match query.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First)
                    }
                    None => caps,
                };
                query.set_result(&result);
                true
            }
            QueryViewMut::AcceptCaps(query) => {
                let accepted = query.caps().can_intersect(&caps);
                query.set_result(accepted);
                true
            }
            _ => false,
        }
    }

    fn src_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            // A live source cannot seek.
            EventView::Seek(_) => false,
            // Consumed here (reconfigure, QoS, latency, navigation): never sent upstream.
            _ => true,
        }
    }

    fn src_activate_mode(
        &self,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        if active {
            self.output.lock().flushing = false;
            self.start_task();
        } else {
            self.cancel_all("deactivating");
            self.output.lock().flushing = true;
            self.output.changed.notify_all();
            self.srcpad
                .stop_task()
                .map_err(|err| gst::loggable_error!(CAT, "cannot stop the src task: {err}"))?;
        }
        Ok(())
    }

    fn start_task(&self) {
        let element = self.obj().downgrade();
        let started = self.srcpad.start_task(move || {
            let Some(element) = element.upgrade() else {
                return;
            };
            element.imp().src_loop();
        });
        if let Err(err) = started {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ["cannot start the src task: {err}"]
            );
        }
    }

    fn src_loop(&self) {
        enum Next {
            Result(Pending),
            Eos,
            Flushing,
        }
        let (next, first) = {
            let mut queue = self.output.lock();
            let next = loop {
                if queue.flushing {
                    break Next::Flushing;
                }
                if let Some(pending) = queue.items.pop_front() {
                    break Next::Result(pending);
                }
                if queue.eos_pending && !queue.eos_sent && queue.in_flight == 0 {
                    queue.eos_sent = true;
                    break Next::Eos;
                }
                queue = self
                    .output
                    .changed
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            };
            let first = !queue.stream_started && !matches!(next, Next::Flushing);
            if first {
                queue.stream_started = true;
            }
            (next, first)
        };
        if first {
            self.push_stream_start();
        }
        match next {
            Next::Flushing => {
                let _ = self.srcpad.pause_task();
            }
            Next::Eos => {
                gst::debug!(CAT, imp = self, "all requests done: EOS");
                self.srcpad.push_event(gst::event::Eos::new());
                let _ = self.srcpad.pause_task();
            }
            Next::Result(pending) => self.push_result(pending, first),
        }
    }

    fn push_stream_start(&self) {
        let stream_id = format!("reasoningsidecar-{:08x}", rand_id());
        self.srcpad
            .push_event(gst::event::StreamStart::new(&stream_id));
        self.srcpad.push_event(gst::event::Caps::new(
            &gst::Caps::builder(RESULT_CAPS).build(),
        ));
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        self.srcpad.push_event(gst::event::Segment::new(&segment));
    }

    fn push_result(&self, pending: Pending, first: bool) {
        let mut bytes = pending.result.to_bytes();
        bytes.push(b'\n');
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            let pts = self
                .obj()
                .current_running_time()
                .or(pending.request_running_time);
            buffer.set_pts(pts);
            if first {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
        }
        gst::log!(
            CAT,
            imp = self,
            "request {} result {} final {} error {}",
            pending.result.request_id,
            pending.result.seq,
            pending.result.is_final,
            pending.result.is_error()
        );
        match self.srcpad.push(buffer) {
            Ok(_) => {}
            Err(gst::FlowError::Flushing) => {
                let _ = self.srcpad.pause_task();
            }
            Err(gst::FlowError::Eos) => {
                // Downstream wants no more: keep answering nothing, without an error.
                gst::debug!(CAT, imp = self, "downstream is EOS");
                self.output.lock().items.clear();
            }
            Err(err) => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["pushing a result failed: {:?}", err]
                );
                self.srcpad.push_event(gst::event::Eos::new());
                let _ = self.srcpad.pause_task();
            }
        }
    }
}

/// A warning on the bus for a failed request. The detail never holds the API key: it comes
/// from the URL and the transport's error, never from request headers.
fn warn_failure(element: &super::ReasoningSidecar, request_id: u64, failure: &Failure) {
    gst::warning!(
        CAT,
        obj = element,
        "request {request_id} failed ({:?}): {}",
        failure.kind,
        failure.detail
    );
    gst::element_warning!(
        element,
        gst::ResourceError::Read,
        (
            "reasoning request {} failed: {}",
            request_id,
            failure.spoken()
        ),
        ["{:?}: {}", failure.kind, failure.detail]
    );
}

/// The `request_id` of a package that does not parse as a whole, when it has one.
fn lenient_request_id(bytes: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("request_id")?.as_u64()
}

fn rand_id() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

#[glib::object_subclass]
impl ObjectSubclass for ReasoningSidecar {
    const NAME: &'static str = "GstReasoningSidecar";
    type Type = super::ReasoningSidecar;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sink_template = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&sink_template)
            .chain_function(|_pad, parent, buffer| {
                ReasoningSidecar::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                ReasoningSidecar::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .query_function(|_pad, parent, query| {
                ReasoningSidecar::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_query(query),
                )
            })
            .build();
        let src_template = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&src_template)
            .event_function(|_pad, parent, event| {
                ReasoningSidecar::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(event),
                )
            })
            .query_function(|_pad, parent, query| {
                ReasoningSidecar::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(query),
                )
            })
            .activatemode_function(|_pad, parent, mode, active| {
                ReasoningSidecar::catch_panic_pad_function(
                    parent,
                    || {
                        Err(gst::loggable_error!(
                            CAT,
                            "panic while activating the src pad"
                        ))
                    },
                    |imp| imp.src_activate_mode(mode, active),
                )
            })
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            output: Arc::new(Output::default()),
        }
    }
}

impl ObjectImpl for ReasoningSidecar {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("backend", ReasoningBackend::default())
                    .nick("Backend")
                    .blurb("Who answers: the in-process GGUF model or an OpenAI-compatible server")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "local-runtime",
                    ReasoningLocalRuntime::default(),
                )
                .nick("Local runtime")
                .blurb("What runs the local backend's GGUF model: llama.cpp or candle")
                .mutable_ready()
                .build(),
                glib::ParamSpecString::builder("model-path")
                    .nick("Model path")
                    .blurb(
                        "GGUF file for the local backend (llama-cpp: any architecture llama.cpp \
                         knows; candle: llama architecture, gpt2 tokenizer); unset: \
                         SmolLM2-135M-Instruct from the model cache",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("base-url")
                    .nick("Base URL")
                    .blurb("OpenAI-compatible API base; /chat/completions is appended")
                    .default_value(Some(DEFAULT_BASE_URL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model")
                    .nick("Model name")
                    .blurb("The model name sent to the OpenAI-compatible server")
                    .default_value(Some(DEFAULT_MODEL_NAME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("api-key-env")
                    .nick("API key variable")
                    .blurb(
                        "Name of the environment variable that holds the API key (sent as a \
                         Bearer token; unset or empty variable: no key). The key itself is \
                         never a property and never logged",
                    )
                    .default_value(Some(DEFAULT_API_KEY_ENV))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("system-prompt")
                    .nick("System prompt")
                    .blurb("The system prompt (system-prompt-file wins when set)")
                    .default_value(Some(DEFAULT_SYSTEM_PROMPT))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("system-prompt-file")
                    .nick("System prompt file")
                    .blurb("A UTF-8 file holding the system prompt, read at start")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-tokens")
                    .nick("Maximum tokens")
                    .blurb("The most tokens generated for one request")
                    .minimum(1)
                    .maximum(4000)
                    .default_value(DEFAULT_MAX_TOKENS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb(
                        "CPU threads of the local llama.cpp runtime; 0: half the cores (at least \
                         1, at most 8), leaving the rest to the interaction model and the pipeline",
                    )
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb(
                        "Milliseconds a request may take from its arrival to its final result; \
                         then it ends with a timeout error result",
                    )
                    .minimum(1)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-concurrent")
                    .nick("Maximum concurrent requests")
                    .blurb(
                        "How many requests run at once; more wait for a slot (their timeout runs)",
                    )
                    .minimum(1)
                    .maximum(16)
                    .default_value(DEFAULT_MAX_CONCURRENT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("temperature")
                    .nick("Temperature")
                    .blurb("Sampling temperature; 0 is greedy (deterministic)")
                    .minimum(0.0)
                    .maximum(2.0)
                    .default_value(DEFAULT_TEMPERATURE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("seed")
                    .nick("Seed")
                    .blurb("Sampling seed (local backend; sent to the server too)")
                    .default_value(DEFAULT_SEED)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("supersede")
                    .nick("Supersede")
                    .blurb(
                        "A newer request cancels the older ones still running (and older request \
                         ids arriving late are ignored); off: requests run side by side",
                    )
                    .default_value(DEFAULT_SUPERSEDE)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        let string = || value.get::<Option<String>>().ok().flatten();
        match pspec.name() {
            "backend" => settings.backend = value.get().unwrap_or_default(),
            "local-runtime" => settings.local_runtime = value.get().unwrap_or_default(),
            "model-path" => settings.model_path = string(),
            "base-url" => settings.base_url = string().unwrap_or_else(|| DEFAULT_BASE_URL.into()),
            "model" => settings.model = string().unwrap_or_else(|| DEFAULT_MODEL_NAME.into()),
            "api-key-env" => {
                settings.api_key_env = string().unwrap_or_else(|| DEFAULT_API_KEY_ENV.into())
            }
            "system-prompt" => settings.system_prompt = string().unwrap_or_default(),
            "system-prompt-file" => settings.system_prompt_file = string(),
            "max-tokens" => settings.max_tokens = value.get().unwrap_or(DEFAULT_MAX_TOKENS),
            "threads" => settings.threads = value.get().unwrap_or(DEFAULT_THREADS),
            "timeout" => settings.timeout_ms = value.get().unwrap_or(DEFAULT_TIMEOUT_MS),
            "max-concurrent" => {
                settings.max_concurrent = value.get().unwrap_or(DEFAULT_MAX_CONCURRENT)
            }
            "temperature" => settings.temperature = value.get().unwrap_or(DEFAULT_TEMPERATURE),
            "seed" => settings.seed = value.get().unwrap_or(DEFAULT_SEED),
            "supersede" => settings.supersede = value.get().unwrap_or(DEFAULT_SUPERSEDE),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "backend" => settings.backend.to_value(),
            "local-runtime" => settings.local_runtime.to_value(),
            "model-path" => settings.model_path.to_value(),
            "base-url" => settings.base_url.to_value(),
            "model" => settings.model.to_value(),
            "api-key-env" => settings.api_key_env.to_value(),
            "system-prompt" => settings.system_prompt.to_value(),
            "system-prompt-file" => settings.system_prompt_file.to_value(),
            "max-tokens" => settings.max_tokens.to_value(),
            "threads" => settings.threads.to_value(),
            "timeout" => settings.timeout_ms.to_value(),
            "max-concurrent" => settings.max_concurrent.to_value(),
            "temperature" => settings.temperature.to_value(),
            "seed" => settings.seed.to_value(),
            "supersede" => settings.supersede.to_value(),
            _ => pspec.default_value().clone(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("adding the sink pad");
        obj.add_pad(&self.srcpad).expect("adding the src pad");
    }
}

impl GstObjectImpl for ReasoningSidecar {}

impl ElementImpl for ReasoningSidecar {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Reasoning sidecar",
                "Filter/Text/Generic",
                "Answers context packages with a background language model (local GGUF or an \
                 OpenAI-compatible server), streaming partial and final results",
                "gst-interaction developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink = gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &gst::Caps::builder(CONTEXT_CAPS).build(),
            )
            .expect("sink template");
            let src = gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &gst::Caps::builder(RESULT_CAPS).build(),
            )
            .expect("src template");
            vec![sink, src]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::trace!(CAT, imp = self, "changing state {transition:?}");
        if transition == gst::StateChange::ReadyToPaused {
            self.start().map_err(|err| {
                self.post_error_message(err);
                gst::StateChangeError
            })?;
        }
        let mut success = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused => {
                success = gst::StateChangeSuccess::NoPreroll;
            }
            gst::StateChange::PausedToReady => self.stop(),
            _ => {}
        }
        Ok(success)
    }
}
