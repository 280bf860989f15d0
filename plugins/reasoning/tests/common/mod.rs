//! Shared test helpers: a real pipeline `appsrc ! reasoningsidecar ! appsink`, context
//! packages, and the OpenAI-compatible test server as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;
use interaction_protocol::context::{
    CONTEXT_CAPS, ContextPackage, RESULT_CAPS, ReasoningResult, Role, Trigger, TriggerReason, Turn,
};

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstreasoning::plugin_register_static().expect("the reasoning plugin registers");
    });
}

/// A context package whose last user turn asks `question`.
pub fn package(request_id: u64, question: &str) -> ContextPackage {
    let mut package = ContextPackage::new(
        request_id,
        Trigger {
            reason: TriggerReason::UserTurnEnded,
            running_time_ns: request_id * 1_000_000_000,
            detail: None,
        },
    );
    package.conversation.push(Turn {
        speaker: "user".into(),
        role: Role::User,
        start_ns: 0,
        end_ns: Some(1_000_000_000),
        text: question.into(),
        truncation: None,
    });
    package
}

/// What came out of the src pad.
#[derive(Debug)]
pub enum Out {
    Result(ReasoningResult, Option<gst::ClockTime>),
    Eos,
}

pub struct Rig {
    pub pipeline: gst::Pipeline,
    pub appsrc: gst_app::AppSrc,
    pub sidecar: gst::Element,
    pub out: Receiver<Out>,
    pub seen: Arc<Mutex<Vec<ReasoningResult>>>,
}

impl Rig {
    /// `appsrc ! reasoningsidecar <props> ! appsink`, set to PLAYING.
    pub fn new(properties: &[(&str, &str)]) -> Self {
        init();
        let pipeline = gst::Pipeline::new();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&gst::Caps::builder(CONTEXT_CAPS).build())
            .format(gst::Format::Time)
            .build();
        let sidecar = gst::ElementFactory::make("reasoningsidecar")
            .build()
            .expect("reasoningsidecar exists");
        for (name, value) in properties {
            sidecar.set_property_from_str(name, value);
        }
        let (sender, out) = channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let eos_sender = Mutex::new(sender.clone());
        let sample_sender = Mutex::new(sender);
        let seen_in_sink = seen.clone();
        let appsink = gst_app::AppSink::builder()
            .caps(&gst::Caps::builder(RESULT_CAPS).build())
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let result = ReasoningResult::parse(map.as_slice())
                            .expect("every result buffer is one JSON result");
                        seen_in_sink.lock().unwrap().push(result.clone());
                        let _ = sample_sender
                            .lock()
                            .unwrap()
                            .send(Out::Result(result, buffer.pts()));
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .eos(move |_| {
                        let _ = eos_sender.lock().unwrap().send(Out::Eos);
                    })
                    .build(),
            )
            .build();
        pipeline
            .add_many([appsrc.upcast_ref(), &sidecar, appsink.upcast_ref()])
            .expect("adds");
        gst::Element::link_many([appsrc.upcast_ref(), &sidecar, appsink.upcast_ref()])
            .expect("links");
        pipeline
            .set_state(gst::State::Playing)
            .expect("the pipeline starts");
        Self {
            pipeline,
            appsrc,
            sidecar,
            out,
            seen,
        }
    }

    pub fn push(&self, package: &ContextPackage) {
        self.push_bytes(package.to_bytes());
    }

    pub fn push_bytes(&self, bytes: Vec<u8>) {
        let buffer = gst::Buffer::from_mut_slice(bytes);
        self.appsrc
            .push_buffer(buffer)
            .expect("appsrc takes the buffer");
    }

    pub fn end_of_stream(&self) {
        self.appsrc.end_of_stream().expect("appsrc takes EOS");
    }

    /// The next output, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Out> {
        match self.out.recv_timeout(timeout) {
            Ok(out) => Some(out),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Results up to and including the final result of `request_id`.
    pub fn until_final(&self, request_id: u64, timeout: Duration) -> Vec<ReasoningResult> {
        let deadline = Instant::now() + timeout;
        let mut results = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(Out::Result(result, _)) => {
                    let done = result.request_id == request_id && result.is_final;
                    results.push(result);
                    if done {
                        return results;
                    }
                }
                Some(Out::Eos) => {
                    panic!("EOS before the final result of {request_id}: {results:?}")
                }
                None => panic!("no final result for {request_id} within {timeout:?}: {results:?}"),
            }
        }
    }

    /// Waits for the first partial result of `request_id`.
    pub fn first_partial(&self, request_id: u64, timeout: Duration) -> ReasoningResult {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(Out::Result(result, _)) if result.request_id == request_id => {
                    assert!(
                        !result.is_final,
                        "expected a partial result, got {result:?}"
                    );
                    return result;
                }
                Some(Out::Result(..)) => continue,
                other => panic!("no partial result for {request_id}: {other:?}"),
            }
        }
    }

    /// Sends EOS and waits for it on the appsink; returns the results that came before it.
    pub fn finish(&self, timeout: Duration) -> Vec<ReasoningResult> {
        self.end_of_stream();
        let deadline = Instant::now() + timeout;
        let mut results = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(Out::Result(result, _)) => results.push(result),
                Some(Out::Eos) => return results,
                None => panic!("no EOS within {timeout:?}"),
            }
        }
    }

    /// Warnings and errors posted so far.
    pub fn bus_messages(&self) -> (Vec<String>, Vec<String>) {
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        while let Some(message) =
            bus.pop_filtered(&[gst::MessageType::Warning, gst::MessageType::Error])
        {
            match message.view() {
                gst::MessageView::Warning(warning) => {
                    warnings.push(format!("{} ({:?})", warning.error(), warning.debug()))
                }
                gst::MessageView::Error(error) => {
                    errors.push(format!("{} ({:?})", error.error(), error.debug()))
                }
                _ => {}
            }
        }
        (warnings, errors)
    }

    pub fn stop(&self) {
        self.pipeline
            .set_state(gst::State::Null)
            .expect("the pipeline stops");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The OpenAI-compatible test server, as a child process on a free loopback port.
pub struct TestServer {
    pub child: Child,
    pub base_url: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_openai-test-server"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader
            .read_line(&mut first)
            .expect("the test server prints its address");
        let base_url = first
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            base_url,
            lines,
        }
    }

    /// Waits until the server printed a line containing `needle`; returns it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.contains(needle))
            {
                return Some(line.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().expect("has an address").port();
    drop(listener);
    port
}
