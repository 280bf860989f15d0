//! The aligner's sink pad: an `AggregatorPad` with a `loopback` property.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

#[derive(Default)]
pub struct MicroturnPad {
    loopback: AtomicBool,
    /// The pipeline is live (learnt from the latency query): text is taken off the pad.
    live: AtomicBool,
    /// Audio pads: bytes per sample of the negotiated format (0 before caps). Read by the
    /// clip function, which runs with the element's state locked.
    audio_bytes_per_sample: AtomicU32,
    audio_rate: AtomicU32,
    /// Loop-back pads: buffers taken off the pad before the base class queues them, with their
    /// running time (`None`: no timestamp). The aligner reads them when it writes a turn, so
    /// an empty loop-back pad never holds a turn back (see `MicroturnMux::divert_loopback`).
    inbox: Mutex<VecDeque<(Option<u64>, gst::Buffer)>>,
}

impl MicroturnPad {
    pub fn is_loopback(&self) -> bool {
        self.loopback.load(Ordering::Relaxed)
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }

    /// Text pads whose buffers go to the inbox instead of the base class's queue: loop-back
    /// pads, and every text pad of a live pipeline (text is sparse; a live aligner never waits
    /// for it).
    pub fn diverts(&self) -> bool {
        self.is_loopback() || self.live.load(Ordering::Relaxed)
    }

    pub fn audio_bytes_per_sample(&self) -> u32 {
        self.audio_bytes_per_sample.load(Ordering::Relaxed)
    }

    pub fn audio_rate(&self) -> u32 {
        self.audio_rate.load(Ordering::Relaxed)
    }

    pub fn push_inbox(&self, running_time: Option<u64>, buffer: gst::Buffer) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.push_back((running_time, buffer));
        }
    }

    /// Takes the diverted buffers that start before `end` (running time), oldest first;
    /// buffers without a timestamp count as due now.
    pub fn take_inbox_before(&self, end: u64, out: &mut Vec<(Option<u64>, gst::Buffer)>) {
        if let Ok(mut inbox) = self.inbox.lock() {
            while inbox
                .front()
                .is_some_and(|(rt, _)| rt.is_none_or(|rt| rt < end))
            {
                if let Some(item) = inbox.pop_front() {
                    out.push(item);
                }
            }
        }
    }

    pub fn clear_inbox(&self) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.clear();
        }
    }

    pub fn set_audio_format(&self, bytes_per_sample: u32, rate: u32) {
        self.audio_bytes_per_sample
            .store(bytes_per_sample, Ordering::Relaxed);
        self.audio_rate.store(rate, Ordering::Relaxed);
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MicroturnPad {
    const NAME: &'static str = "GstMicroturnPad";
    type Type = super::MicroturnPad;
    type ParentType = gst_base::AggregatorPad;
}

impl ObjectImpl for MicroturnPad {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: std::sync::LazyLock<Vec<glib::ParamSpec>> =
            std::sync::LazyLock::new(|| {
                vec![
                    glib::ParamSpecBoolean::builder("loopback")
                        .nick("Loop-back")
                        .blurb(
                            "Text pads only: the input is fed back from downstream (for example \
                             reasoning results). The aligner never waits for it and it does not \
                             hold back end of stream",
                        )
                        .default_value(false)
                        .mutable_playing()
                        .build(),
                ]
            });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if pspec.name() == "loopback" {
            let loopback = value.get().unwrap_or(false);
            self.loopback.store(loopback, Ordering::Relaxed);
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "loopback" => self.is_loopback().to_value(),
            _ => false.to_value(),
        }
    }
}

impl GstObjectImpl for MicroturnPad {}
impl PadImpl for MicroturnPad {}
impl AggregatorPadImpl for MicroturnPad {}
