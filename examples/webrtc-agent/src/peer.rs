//! One browser peer: a `webrtcbin` pipeline that sends the agent's speech as Opus and hands
//! the peer's decoded audio to the agent.
//!
//! ```text
//! appsrc speech (48 kHz S16, from the agent) ! opusenc ! rtpopuspay ! webrtcbin
//! webrtcbin (pad-added) ! rtpopusdepay ! opusdec ! audioconvert ! audioresample
//!   ! 16 kHz F32 mono ! appsink ──▶ the agent's input ring
//! ```
//!
//! webrtcbin makes the offer (one send-receive Opus transceiver) when the pipeline starts;
//! the page answers. ICE uses host candidates only (no STUN, no TURN): by default on 127.0.0.1
//! only, which is what a browser on the same machine needs.

use std::sync::Arc;

use gst::prelude::*;
use tokio::sync::mpsc::UnboundedSender;

use crate::agent::{Agent, BoxError, Feeder, OUTPUT_RATE, RATE};
use crate::signal::Signal;

/// How a peer connection is set up.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Local addresses ICE gathers host candidates on; empty: every interface (libnice's
    /// discovery).
    pub ice_addresses: Vec<String>,
    /// webrtcbin's jitter buffer length, in ms.
    pub jitter_ms: u32,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            ice_addresses: vec!["127.0.0.1".into()],
            jitter_ms: 100,
        }
    }
}

/// A connected peer. Dropping it stops its pipeline and detaches it from the agent.
pub struct Peer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    agent: Arc<Agent>,
}

impl Peer {
    /// Builds the peer pipeline, attaches it to the agent and starts it; webrtcbin's offer and
    /// candidates, the agent's captions and decisions go to `signals`.
    pub fn start(
        agent: Arc<Agent>,
        options: &PeerOptions,
        signals: UnboundedSender<Signal>,
    ) -> Result<Peer, BoxError> {
        let description = format!(
            "webrtcbin name=webrtc bundle-policy=max-bundle latency={jitter} \
             appsrc name=speech is-live=true format=time do-timestamp=true \
               caps=audio/x-raw,format=S16LE,rate={OUTPUT_RATE},channels=1,layout=interleaved \
             ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=200000000 leaky=downstream \
             ! opusenc audio-type=voice ! rtpopuspay pt=96 \
             ! application/x-rtp,media=audio,encoding-name=OPUS,payload=96,clock-rate=48000 \
             ! webrtc.",
            jitter = options.jitter_ms
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| format!("cannot build the peer pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the peer description is not a pipeline")?;
        let bin = pipeline.upcast_ref::<gst::Bin>();
        let webrtc = bin
            .by_name("webrtc")
            .ok_or("no webrtcbin in the peer pipeline")?;
        let speech = bin
            .by_name("speech")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("no speech appsrc in the peer pipeline")?;
        let peer = Peer {
            pipeline,
            webrtc: webrtc.clone(),
            agent: agent.clone(),
        };

        if !options.ice_addresses.is_empty() {
            let ice = webrtc.property::<glib::Object>("ice-agent");
            for address in &options.ice_addresses {
                if !ice.emit_by_name::<bool>("add-local-ip-address", &[address]) {
                    return Err(format!("ICE: cannot use the local address `{address}`").into());
                }
            }
        }

        let offers = signals.clone();
        webrtc.connect("on-negotiation-needed", false, move |values| {
            if let Some(Ok(webrtc)) = values.first().map(|v| v.get::<gst::Element>()) {
                create_offer(&webrtc, offers.clone());
            }
            None
        });
        let candidates = signals.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let index = values.get(1).and_then(|v| v.get::<u32>().ok());
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
            if let (Some(sdp_mline_index), Some(candidate)) = (index, candidate) {
                let _ = candidates.send(Signal::Ice {
                    candidate,
                    sdp_mline_index,
                });
            }
            None
        });
        for property in ["ice-connection-state", "connection-state"] {
            webrtc.connect_notify(Some(property), move |webrtc, spec| {
                let value = webrtc.property_value(spec.name());
                let state = value.serialize().map(|s| s.to_string()).unwrap_or_default();
                eprintln!("webrtc-agent: peer {}: {state}", spec.name());
            });
        }
        let feeder = agent.feeder();
        webrtc.connect_pad_added(move |webrtc, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Err(error) = receive(webrtc, pad, feeder.clone()) {
                gst::element_error!(
                    webrtc,
                    gst::StreamError::Failed,
                    ("cannot receive the peer's audio: {}", error)
                );
            }
        });

        agent.attach(speech, signals);
        peer.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| "the peer pipeline did not start")?;
        Ok(peer)
    }

    /// The peer pipeline's bus (errors end the session).
    pub fn bus(&self) -> Option<gst::Bus> {
        self.pipeline.bus()
    }

    /// Applies one message from the page: the answer or an ICE candidate.
    pub fn handle(&self, signal: Signal) -> Result<(), String> {
        match signal {
            Signal::Answer { sdp } => {
                let message = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
                    .map_err(|_| "the answer is not valid SDP".to_owned())?;
                let answer = gst_webrtc::WebRTCSessionDescription::new(
                    gst_webrtc::WebRTCSDPType::Answer,
                    message,
                );
                self.webrtc.emit_by_name::<()>(
                    "set-remote-description",
                    &[&answer, &None::<gst::Promise>],
                );
                Ok(())
            }
            Signal::Ice {
                candidate,
                sdp_mline_index,
            } => {
                // The end-of-candidates marker is an empty candidate: nothing to add.
                if !candidate.is_empty() {
                    self.webrtc
                        .emit_by_name::<()>("add-ice-candidate", &[&sdp_mline_index, &candidate]);
                }
                Ok(())
            }
            other => Err(format!(
                "the page sent a message only the server sends: {}",
                other.to_json()
            )),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.agent.detach();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// webrtcbin's `on-negotiation-needed`: make the offer, set it locally, send it.
fn create_offer(webrtc: &gst::Element, signals: UnboundedSender<Signal>) {
    let weak = webrtc.downgrade();
    let promise = gst::Promise::with_change_func(move |reply| {
        let Some(webrtc) = weak.upgrade() else {
            return;
        };
        let offer = match reply {
            Ok(Some(reply)) => match reply.get::<gst_webrtc::WebRTCSessionDescription>("offer") {
                Ok(offer) => Ok(offer),
                Err(_) => Err(format!("webrtcbin made no offer: {reply}")),
            },
            Ok(None) => Err("webrtcbin made no offer".to_owned()),
            Err(e) => Err(format!("webrtcbin made no offer: {e:?}")),
        };
        let offer = offer.and_then(|offer| {
            let sdp = offer
                .sdp()
                .as_text()
                .map_err(|e| format!("cannot write the offer as SDP: {e}"))?;
            Ok((offer, sdp))
        });
        match offer {
            Ok((offer, sdp)) => {
                // The offer goes out first: setting it locally starts ICE gathering, and the
                // page must not get a candidate before the offer it belongs to.
                let _ = signals.send(Signal::Offer { sdp });
                webrtc
                    .emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
            }
            Err(message) => {
                let _ = signals.send(Signal::Error { message });
            }
        }
    });
    webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
}

/// webrtcbin's new source pad (the peer's RTP): decode and hand the audio to the agent.
fn receive(webrtc: &gst::Element, pad: &gst::Pad, feeder: Feeder) -> Result<(), BoxError> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let encoding = caps
        .structure(0)
        .and_then(|s| s.get::<String>("encoding-name").ok())
        .unwrap_or_default();
    let pipeline = webrtc
        .parent()
        .and_then(|p| p.downcast::<gst::Bin>().ok())
        .ok_or("webrtcbin is not in a pipeline")?;
    let description = if encoding.eq_ignore_ascii_case("OPUS") {
        format!(
            "queue ! rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample \
             ! audio/x-raw,format=F32LE,rate={RATE},channels=1,layout=interleaved \
             ! appsink name=user sync=false"
        )
    } else {
        eprintln!("webrtc-agent: ignoring a peer stream that is not Opus: {caps}");
        "fakesink sync=false".to_owned()
    };
    let bin = gst::parse::bin_from_description(&description, true)?;
    if let Some(sink) = bin
        .by_name("user")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    {
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer() {
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let samples: Vec<f32> = map
                            .as_slice()
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect();
                        feeder.feed(&samples);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.add(&bin)?;
    bin.sync_state_with_parent()?;
    let sink = bin
        .static_pad("sink")
        .ok_or("the decoder has no sink pad")?;
    pad.link(&sink)?;
    eprintln!("webrtc-agent: receiving the peer's audio ({encoding})");
    Ok(())
}
