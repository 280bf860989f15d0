//! Real speech through `microturnmux ! interactionmodel` (non-live): the user asks, the turn
//! ends, the reasoning result comes in on a text pad in the sidecar's JSON format, is spoken, and
//! the user's interruption yields it.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use interaction_protocol::events::messages;

const ANSWER: &str = "Trains to the mountains leave every hour from the central station, and \
    the trip takes about two and a half hours with one change in the valley.";

#[test]
fn microturnmux_then_interactionmodel_answers_and_yields() {
    init();
    gstmicroturn::plugin_register_static().expect("register microturnmux");
    let asked = Script::default()
        .silence(400)
        .say("How do I get to the mountains by train?")
        .silence(1400);
    let answer_at = asked.now();
    let script = asked
        .silence(1200)
        .say("Hold on I have another question about the trains")
        .silence(1600)
        .whole_turns();
    let (_, onset, _) = script.spoken[1];

    let pipeline = gst::Pipeline::new();
    let audio_src = gst_app::AppSrc::builder()
        .caps(&gst_audio_caps())
        .format(gst::Format::Time)
        .build();
    let text_src = gst_app::AppSrc::builder()
        .caps(&gst::Caps::builder("application/x-interaction-result").build())
        .format(gst::Format::Time)
        .build();
    let mux = gst::ElementFactory::make("microturnmux").build().unwrap();
    let im = element(&[("filler-ms", "0")]);
    pipeline
        .add_many([audio_src.upcast_ref(), text_src.upcast_ref(), &mux, &im])
        .unwrap();
    audio_src.link_pads(None, &mux, Some("audio")).unwrap();
    let text_pad = mux.request_pad_simple("text_%u").expect("a text pad");
    text_src.static_pad("src").unwrap().link(&text_pad).unwrap();
    mux.link(&im).unwrap();
    let outs: Vec<Arc<Mutex<Vec<Out>>>> = (0..3).map(|_| Arc::default()).collect();
    for (name, out) in ["speech", "transcript", "reasoning"].iter().zip(&outs) {
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        let pad = im.static_pad(name).unwrap();
        record(&pad, out.clone());
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    }
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    // Audio in 20 ms buffers.
    for (i, chunk) in script.audio.chunks(320).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 20));
            b.set_duration(gst::ClockTime::from_mseconds(20));
        }
        audio_src.push_buffer(buffer).unwrap();
    }
    audio_src.end_of_stream().unwrap();
    // The sidecar's answer to request 1, as one final result.
    let json = serde_json::json!({
        "version": 1, "request_id": 1, "seq": 0, "final": true,
        "text": ANSWER, "delta": ANSWER, "error": null,
    })
    .to_string();
    let mut buffer = gst::Buffer::from_mut_slice(json.into_bytes());
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_nseconds(answer_at));
    text_src.push_buffer(buffer).unwrap();
    text_src.end_of_stream().unwrap();

    let mut messages = Vec::new();
    loop {
        let message = bus
            .timed_pop(gst::ClockTime::from_seconds(120))
            .expect("EOS within 120 s");
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && message.src().is_some_and(|s| s == &im)
                {
                    messages.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let speech = outs[0].lock().unwrap().clone();
    let named = |name: &str| messages.iter().filter(|m| m.name() == name).count();
    assert!(named(messages::USER_TURN_ENDED) >= 1);
    assert_eq!(named(messages::RESULT_USED), 1);
    let speak = speech
        .iter()
        .position(|o| matches!(o, Out::Speak(1)))
        .expect("the answer is spoken");
    assert!(matches!(&speech[speak + 1], Out::Text { text, .. } if text == ANSWER));
    assert!(
        speech
            .iter()
            .skip(speak)
            .any(|o| matches!(o, Out::Yield(Some(1))))
    );
    let barge = messages
        .iter()
        .find(|m| m.name() == messages::BARGE_IN)
        .map(running_time)
        .expect("barge-in");
    assert!(
        barge >= onset + 700 * MS && barge <= onset + 700 * MS + TURN_NS + 32 * MS,
        "barge-in {} ms after the onset",
        (barge - onset) / MS
    );
    let captions: Vec<String> = outs[1]
        .lock()
        .unwrap()
        .iter()
        .filter_map(|o| match o {
            Out::Text { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(captions[0].starts_with("user: "), "{captions:?}");
    assert!(
        captions
            .iter()
            .any(|c| c.starts_with("agent: ") && c.ends_with("[interrupted]")),
        "{captions:?}"
    );
}

fn gst_audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("rate", 16_000i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build()
}
