//! `speechsynth` through `gst_check::Harness`, with the real default Piper voice (and
//! espeak-ng for the fallback backend).

mod common;

use common::*;
use gst::prelude::*;
use interaction_protocol::events::{Progress, ProgressReason, Speak, Yield};

#[test]
fn properties_round_trip() {
    init();
    let element = gst::ElementFactory::make("speechsynth")
        .build()
        .expect("speechsynth");
    assert_eq!(
        element.property::<gstspeech::speechsynth::Backend>("backend"),
        gstspeech::speechsynth::Backend::Piper
    );
    assert_eq!(element.property::<Option<String>>("voice"), None);
    element.set_property("backend", gstspeech::speechsynth::Backend::Espeak);
    assert_eq!(
        element.property::<gstspeech::speechsynth::Backend>("backend"),
        gstspeech::speechsynth::Backend::Espeak
    );
    element.set_property_from_str("backend", "piper");
    assert_eq!(
        element.property::<gstspeech::speechsynth::Backend>("backend"),
        gstspeech::speechsynth::Backend::Piper
    );
    element.set_property("voice", Some("/tmp/voice.onnx"));
    assert_eq!(
        element.property::<Option<String>>("voice").as_deref(),
        Some("/tmp/voice.onnx")
    );
    for (name, value) in [("rate", 1.5f64), ("volume", 0.25), ("noise-scale", 0.3), ("noise-w", 0.5)] {
        element.set_property(name, value);
        assert_eq!(element.property::<f64>(name), value, "{name}");
    }
    for (name, value) in [
        ("sentence-silence", 350u32),
        ("buffer-duration", 20),
        ("fade-duration", 8),
        ("first-phrase-words", 4),
        ("threads", 2),
    ] {
        element.set_property(name, value);
        assert_eq!(element.property::<u32>(name), value, "{name}");
    }
    element.set_property("is-live", true);
    assert!(element.property::<bool>("is-live"));
    // Defaults, as documented.
    let fresh = gst::ElementFactory::make("speechsynth").build().unwrap();
    assert_eq!(fresh.property::<f64>("rate"), 1.0);
    assert_eq!(fresh.property::<f64>("volume"), 1.0);
    assert_eq!(fresh.property::<u32>("sentence-silence"), 200);
    assert_eq!(fresh.property::<u32>("buffer-duration"), 10);
    assert_eq!(fresh.property::<u32>("fade-duration"), 5);
    assert!(!fresh.property::<bool>("is-live"));
    assert_eq!(fresh.property::<f64>("noise-scale"), -1.0);
}

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";

#[test]
fn default_voice_speaks_a_sentence_with_continuous_timestamps_and_progress() {
    init();
    let mut h = harness(&[]);
    h.push_event(Speak { utterance_id: 7 }.to_event());
    h.push(text_buffer(SENTENCE)).expect("push text");
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);

    let caps = h.sinkpad().unwrap().current_caps().expect("caps");
    let info = gst_audio::AudioInfo::from_caps(&caps).expect("audio caps");
    assert_eq!(info.rate(), RATE);
    assert_eq!(info.channels(), 1);
    assert_eq!(info.format(), gst_audio::AudioFormat::S16le);

    assert_continuous(&out.buffers, gst::ClockTime::ZERO);
    // Buffers are at most buffer-duration (10 ms) long.
    assert!(out.buffers.iter().all(|b| b.size() / 2 <= 221));
    // Nine words: between 0.2 and 0.6 s per word, plus the sentence silence.
    let seconds = out.samples.len() as f64 / f64::from(RATE);
    assert!((1.8..5.6).contains(&seconds), "{seconds} s for nine words");
    assert!(rms(&out.samples) > 0.02, "rms {}", rms(&out.samples));

    let chars = SENTENCE.chars().count() as u64;
    let phrase = out
        .progress
        .iter()
        .find(|p| p.reason == ProgressReason::Phrase)
        .expect("a phrase progress");
    assert_eq!(phrase.utterance_id, 7);
    assert_eq!(phrase.characters, chars);
    // The phrase ends before its 200 ms of sentence silence.
    let end = gst::ClockTime::from_nseconds(out.samples.len() as u64 * 1_000_000_000 / u64::from(RATE));
    let silence = end - phrase.running_time;
    assert!(
        (gst::ClockTime::from_mseconds(190)..=gst::ClockTime::from_mseconds(210)).contains(&silence),
        "{silence}"
    );
    let completed = out.progress.last().expect("progress");
    assert_eq!(completed.reason, ProgressReason::Completed);
    assert_eq!((completed.characters, completed.bytes), (chars, chars));
    assert_eq!(completed.running_time, end);
}
