//! `speechsynth` through `gst_check::Harness`, with the real default Piper voice (and
//! espeak-ng for the fallback backend).

mod common;

use common::*;
use gst::prelude::*;
use interaction_protocol::events::{
    Pause, Prepare, Progress, ProgressReason, Resume, Speak, Yield,
};

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
    for (name, value) in [
        ("rate", 1.5f64),
        ("volume", 0.25),
        ("noise-scale", 0.3),
        ("noise-w", 0.5),
    ] {
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
    let end =
        gst::ClockTime::from_nseconds(out.samples.len() as u64 * 1_000_000_000 / u64::from(RATE));
    let silence = end - phrase.running_time;
    assert!(
        (gst::ClockTime::from_mseconds(190)..=gst::ClockTime::from_mseconds(210))
            .contains(&silence),
        "{silence}"
    );
    let completed = out.progress.last().expect("progress");
    assert_eq!(completed.reason, ProgressReason::Completed);
    assert_eq!((completed.characters, completed.bytes), (chars, chars));
    assert_eq!(completed.running_time, end);
}

/// Normalised words (the shared rule of `interaction_asr`).
fn words(text: &str) -> Vec<String> {
    interaction_asr::wer::normalize_words(text)
}

/// Transcribes 22 050 Hz speech with Whisper tiny.en (`interaction_asr`, the project's Rust
/// transcriber), after resampling to 16 kHz with sox (a separate program, through the
/// workspace's `test-audio`).
fn transcribe(samples: &[f32]) -> String {
    let dir = scratch("transcribe");
    let wav = dir.join("speech.wav");
    write_wav(&wav, samples, RATE);
    let audio = test_audio::read_16k(&wav, &[]).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let mut whisper = interaction_asr::Whisper::load(interaction_asr::default_model_dir())
        .expect("Whisper tiny.en (scripts/setup.sh converts it)");
    whisper.transcribe(&audio).expect("transcription").text
}

#[test]
fn whisper_understands_the_default_voice() {
    init();
    // Two sentences without numbers (Whisper writes "ten" as "10"), streamed in word tokens
    // as a language model would send them.
    let text = "I would like to book a table for two people on Friday evening. \
                Can you tell me what the weather will be like this weekend?";
    let mut h = harness(&[]);
    for token in text.split_inclusive(' ') {
        h.push(text_buffer(token)).expect("push text");
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);
    assert_continuous(&out.buffers, gst::ClockTime::ZERO);

    let word_count = words(text).len();
    let seconds = out.samples.len() as f64 / f64::from(RATE);
    assert!(
        (0.2 * word_count as f64..0.6 * word_count as f64).contains(&seconds),
        "{seconds} s for {word_count} words"
    );
    // Both sentences were reported as played, in order.
    let phrase_ends: Vec<u64> = out
        .progress
        .iter()
        .filter(|p| p.reason == ProgressReason::Phrase)
        .map(|p| p.characters)
        .collect();
    assert_eq!(
        phrase_ends.last().copied(),
        Some(text.chars().count() as u64)
    );
    assert!(
        phrase_ends.windows(2).all(|w| w[0] < w[1]),
        "{phrase_ends:?}"
    );

    let transcript = transcribe(&out.samples);
    let wer = interaction_asr::word_error_rate(text, &transcript);
    assert!(wer <= 0.10, "WER {wer:.2}: heard {transcript:?}");
}

#[test]
fn espeak_backend_speaks_at_its_own_rate() {
    init();
    let mut h = harness(&[("backend", "espeak"), ("sentence-silence", "0")]);
    h.push(text_buffer(SENTENCE)).expect("push text");
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);
    let caps = h.sinkpad().unwrap().current_caps().expect("caps");
    let info = gst_audio::AudioInfo::from_caps(&caps).expect("audio caps");
    assert_eq!(info.rate(), 22_050);
    assert_continuous(&out.buffers, gst::ClockTime::ZERO);
    let seconds = out.samples.len() as f64 / 22_050.0;
    assert!((1.8..5.4).contains(&seconds), "{seconds} s for nine words");
    assert!(rms(&out.samples) > 0.02);
    assert_eq!(
        out.progress.last().map(|p| p.reason),
        Some(ProgressReason::Completed)
    );
}

/// Sets up `element` alone in a pipeline, goes to PAUSED, returns the error message text.
fn start_error(properties: &[(&str, &str)]) -> String {
    init();
    let mut builder = gst::ElementFactory::make("speechsynth");
    for (name, value) in properties {
        builder = builder.property_from_str(name, value);
    }
    let element = builder.build().unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([&element, &sink]).unwrap();
    element.link(&sink).unwrap();
    let result = pipeline.set_state(gst::State::Paused);
    assert!(result.is_err(), "starting must fail");
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    pipeline.set_state(gst::State::Null).unwrap();
    format!("{} ({})", error.error(), error.debug().unwrap_or_default())
}

#[test]
fn missing_corrupt_or_unconfigured_voices_fail_at_start() {
    let dir = scratch("voices");
    let missing = dir.join("missing.onnx");
    let text = start_error(&[("voice", missing.to_str().unwrap())]);
    assert!(
        text.contains("missing.onnx") && text.contains("does not exist"),
        "{text}"
    );

    // A corrupt model with a valid config.
    let default_voice =
        interaction_runtime::model_file("piper/en_US-joe-medium.onnx").expect("default voice");
    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07 this is not a protobuf").unwrap();
    std::fs::copy(
        gstspeech::voice::config_path(&default_voice),
        gstspeech::voice::config_path(&corrupt),
    )
    .unwrap();
    let text = start_error(&[("voice", corrupt.to_str().unwrap())]);
    assert!(
        text.contains("corrupt.onnx") && text.contains("could not be loaded"),
        "{text}"
    );

    // A good model without its .onnx.json.
    let lonely = dir.join("lonely.onnx");
    std::os::unix::fs::symlink(&default_voice, &lonely).unwrap();
    let text = start_error(&[("voice", lonely.to_str().unwrap())]);
    assert!(
        text.contains("lonely.onnx.json") && text.contains("does not exist"),
        "{text}"
    );

    // An espeak-ng voice that does not exist.
    let text = start_error(&[("backend", "espeak"), ("voice", "nonexistentvoice")]);
    assert!(text.contains("nonexistentvoice"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn empty_text_and_emoji_give_silence_and_eos() {
    init();
    let mut h = harness(&[]);
    h.push_event(Speak { utterance_id: 1 }.to_event());
    h.push(text_buffer("")).expect("push empty");
    h.push_event(Speak { utterance_id: 2 }.to_event());
    h.push(text_buffer("😀 🎉👍🏽")).expect("push emoji");
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);
    assert!(out.samples.iter().all(|&s| s == 0.0), "no speech expected");
    // Both utterances are reported complete: the first with nothing, the second with all
    // its (unpronounceable) characters.
    let completed: Vec<&Progress> = out
        .progress
        .iter()
        .filter(|p| p.reason == ProgressReason::Completed)
        .collect();
    assert_eq!(completed.len(), 2, "{:?}", out.progress);
    assert_eq!((completed[0].utterance_id, completed[0].characters), (1, 0));
    assert_eq!((completed[1].utterance_id, completed[1].characters), (2, 5));
}

#[test]
fn ten_kilobytes_in_one_buffer_start_at_once_and_stop_on_yield() {
    init();
    let paragraph = "The committee met on Tuesday, and after a long discussion it agreed to \
                     publish the report. Everyone was pleased with the result! ";
    let text = paragraph.repeat(10_240 / paragraph.len() + 1);
    assert!(text.len() >= 10_240);
    let mut h = harness(&[]);
    let started = std::time::Instant::now();
    h.push(text_buffer(&text)).expect("push 10 kB");
    // The first phrase plays long before the whole text could have been synthesised.
    let first = h.pull().expect("first audio");
    let first_audio = started.elapsed();
    assert_eq!(first.pts(), Some(gst::ClockTime::ZERO));
    assert!(
        first_audio.as_secs_f64() < 10.0,
        "first audio after {first_audio:?}"
    );
    // Play about two seconds, then yield.
    let mut buffers = vec![first];
    while buffers.len() < 200 {
        buffers.push(h.pull().expect("audio"));
    }
    h.push_event(Yield::default().to_event());
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);
    buffers.extend(out.buffers);
    assert_continuous(&buffers, gst::ClockTime::ZERO);
    let seconds = buffers.iter().map(|b| b.size() / 2).sum::<usize>() as f64 / f64::from(RATE);
    assert!(seconds < 60.0, "{seconds} s played after the yield");
    let interrupted = out
        .progress
        .iter()
        .find(|p| p.reason == ProgressReason::Interrupted)
        .expect("an interrupted progress");
    assert!(interrupted.characters > 0 && interrupted.characters < text.len() as u64 / 2);
    assert!(text.is_char_boundary(interrupted.bytes as usize));
}

/// The end of the last sample louder than -80 dBFS, as a running time.
fn audio_end(buffers: &[gst::Buffer]) -> Option<gst::ClockTime> {
    buffers.iter().rev().find_map(|buffer| {
        let s = samples(buffer);
        let last = s.iter().rposition(|x| x.abs() > 1e-4)?;
        Some(
            buffer.pts().unwrap()
                + gst::ClockTime::from_nseconds(
                    (last as u64 + 1) * 1_000_000_000 / u64::from(RATE),
                ),
        )
    })
}

#[test]
fn live_yield_in_mid_utterance_stops_within_20_ms_and_reports_what_was_heard() {
    init();
    let text =
        "The quick brown fox jumps over the lazy dog near the quiet river bank every morning.";
    // No noise: the same text gives the same audio, so the cut is reproducible.
    let mut h = harness(&[("is-live", "true"), ("noise-scale", "0"), ("noise-w", "0")]);
    assert!(h.testclock().is_some(), "the harness drives a test clock");
    h.push_event(Speak { utterance_id: 11 }.to_event());
    h.push(text_buffer(text)).expect("push text");

    // Silence flows on the clock while the phrase is synthesised; speech follows.
    let mut buffers = Vec::new();
    let mut speech_start = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        h.crank_single_clock_wait().expect("clock wait");
        let buffer = h.pull().expect("live output");
        let loud = rms(&samples(&buffer)) > 0.005;
        buffers.push(buffer);
        if loud {
            speech_start = Some(buffers.len());
            break;
        }
    }
    let speech_start = speech_start.expect("speech within the test");
    // 1.2 s into the speech, yield. The test clock moves at the pace of the real one here, as
    // a sound card would: the voice decodes ahead of playback, as it does in real use.
    let paced_start = std::time::Instant::now();
    for n in 1..=120u32 {
        let due = paced_start + std::time::Duration::from_millis(10) * n;
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        h.crank_single_clock_wait().expect("clock wait");
        buffers.push(h.pull().expect("live output"));
    }
    let yield_time = h.testclock().unwrap().time();
    assert_eq!(Some(yield_time), buffers.last().unwrap().pts());
    h.push_event(Yield::default().to_event());
    for _ in 0..20 {
        h.crank_single_clock_wait().expect("clock wait");
        buffers.push(h.pull().expect("live output"));
    }
    // Live output never stops: silence follows, timestamps stay continuous.
    assert_continuous(&buffers, buffers[0].pts().unwrap());
    assert!(buffers.iter().all(|b| b.size() / 2 <= 221));

    let end = audio_end(&buffers).expect("some audio");
    assert!(end > yield_time, "speech was still playing at the yield");
    let overrun = end - yield_time;
    assert!(
        overrun <= gst::ClockTime::from_mseconds(20),
        "audio went on {overrun} after the yield"
    );
    // A fade, not a click: the last 5 ms fall smoothly to silence.
    let last_loud = buffers
        .iter()
        .rposition(|b| samples(b).iter().any(|x| x.abs() > 1e-4))
        .unwrap();
    let fade = samples(&buffers[last_loud]);
    let fade_peak_end = fade
        .iter()
        .rev()
        .skip_while(|x| x.abs() <= 1e-4)
        .take(10)
        .fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(fade_peak_end < 0.02, "the fade ends at {fade_peak_end}");

    let progress = upstream_progress(&mut h);
    let interrupted = progress
        .iter()
        .find(|p| p.reason == ProgressReason::Interrupted)
        .expect("an interrupted progress");
    assert_eq!(interrupted.utterance_id, 11);
    assert!(interrupted.running_time.nseconds().abs_diff(end.nseconds()) <= 1_000_000);
    let heard_text = &text[..interrupted.bytes as usize];
    assert_eq!(heard_text.chars().count() as u64, interrupted.characters);
    assert!(
        interrupted.characters > 0 && interrupted.characters < text.len() as u64,
        "{interrupted:?}"
    );

    // What was really played, transcribed: the words Whisper hears are the words the progress
    // event names, give or take the word that the cut fell into.
    let played: Vec<f32> = buffers[speech_start.saturating_sub(30)..]
        .iter()
        .flat_map(|b| samples(b))
        .collect();
    let transcript = transcribe(&played);
    eprintln!("progress: {interrupted:?} = {heard_text:?}; Whisper heard {transcript:?}");
    let (said, heard) = (words(heard_text), words(&transcript));
    assert!(
        said.len().abs_diff(heard.len()) <= 1,
        "progress says {heard_text:?}, Whisper heard {transcript:?}"
    );
    let common = said.len().min(heard.len()).saturating_sub(1);
    assert_eq!(
        said[..common],
        heard[..common],
        "Whisper heard {transcript:?}"
    );
}

/// Cranks the live harness's clock and pulls `count` buffers, at the pace of the real clock
/// (10 ms buffers), so the voice decodes ahead of playback as in real use.
fn paced(h: &mut gst_check::Harness, buffers: &mut Vec<gst::Buffer>, count: usize) {
    let start = std::time::Instant::now();
    for n in 1..=count as u32 {
        let due = start + std::time::Duration::from_millis(10) * n;
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        h.crank_single_clock_wait().expect("clock wait");
        buffers.push(h.pull().expect("live output"));
    }
}

fn loud(buffer: &gst::Buffer) -> bool {
    samples(buffer).iter().any(|x| x.abs() > 1e-4)
}

/// Live output until the first loud buffer.
fn until_speech(h: &mut gst_check::Harness, buffers: &mut Vec<gst::Buffer>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !buffers.last().is_some_and(loud) {
        assert!(std::time::Instant::now() < deadline, "no speech");
        h.crank_single_clock_wait().expect("clock wait");
        buffers.push(h.pull().expect("live output"));
    }
}

#[test]
fn live_pause_goes_silent_within_20_ms_and_resume_plays_the_rest() {
    init();
    let text = "The quick brown fox jumps over the lazy dog near the quiet river bank.";
    let mut h = harness(&[("is-live", "true"), ("noise-scale", "0"), ("noise-w", "0")]);
    h.push_event(Speak { utterance_id: 3 }.to_event());
    h.push(text_buffer(text)).expect("push text");
    let mut buffers = Vec::new();
    until_speech(&mut h, &mut buffers);
    // 0.8 s into the speech, pause.
    paced(&mut h, &mut buffers, 80);
    let pause_time = h.testclock().unwrap().time();
    let pause = Pause {
        utterance_id: Some(3),
        max_duration: None,
    };
    h.push_event(pause.to_event());
    let paused_from = buffers.len();
    paced(&mut h, &mut buffers, 50);
    let end = audio_end(&buffers).expect("some audio");
    assert!(
        end > pause_time && end - pause_time <= gst::ClockTime::from_mseconds(20),
        "audio went on {} after the pause",
        end - pause_time
    );
    assert!(
        buffers[paused_from + 2..].iter().all(|b| !loud(b)),
        "silent while paused"
    );
    // A pause is not an interruption: no progress says so.
    assert!(
        upstream_progress(&mut h)
            .iter()
            .all(|p| p.reason != ProgressReason::Interrupted)
    );
    // Resume: the speech comes back at once and the utterance plays to its end.
    h.push_event(
        Resume {
            utterance_id: Some(3),
        }
        .to_event(),
    );
    let resumed_from = buffers.len();
    paced(&mut h, &mut buffers, 3);
    assert!(
        buffers[resumed_from..].iter().any(loud),
        "speech again within 30 ms of the resume"
    );
    // The end of the input ends the utterance: `completed` once it has all played.
    h.push_event(gst::event::Eos::new());
    let mut progress = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !progress
        .iter()
        .any(|p: &Progress| p.reason == ProgressReason::Completed)
    {
        assert!(std::time::Instant::now() < deadline, "never completed");
        // The last buffers before EOS: stop at the first that does not come.
        if h.crank_single_clock_wait().is_err() {
            break;
        }
        match h.try_pull() {
            Some(buffer) => buffers.push(buffer),
            None => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
        progress.extend(upstream_progress(&mut h));
    }
    assert_continuous(&buffers, buffers[0].pts().unwrap());
    let completed = progress
        .iter()
        .find(|p| p.reason == ProgressReason::Completed)
        .expect("the utterance completes");
    assert_eq!(completed.utterance_id, 3);
    assert_eq!(completed.characters, text.chars().count() as u64);
    // Nothing was dropped: as much speech as the same text unpaused (within 60 ms).
    let spoken = buffers.iter().filter(|b| loud(b)).count();
    let mut plain = harness(&[("noise-scale", "0"), ("noise-w", "0")]);
    plain.push_event(Speak { utterance_id: 1 }.to_event());
    plain.push(text_buffer(text)).expect("push text");
    plain.push_event(gst::event::Eos::new());
    let reference = pull_until_eos(&mut plain);
    let reference_loud = reference.buffers.iter().filter(|b| loud(b)).count();
    assert!(
        spoken.abs_diff(reference_loud) <= 6,
        "{spoken} loud buffers paused and resumed, {reference_loud} straight"
    );
}

#[test]
fn a_pause_ends_by_itself_after_its_max_duration_and_a_yield_ends_it_silently() {
    init();
    let text = "Please turn off the lights in the kitchen before you go to bed tonight.";
    let mut h = harness(&[("is-live", "true")]);
    h.push_event(Speak { utterance_id: 5 }.to_event());
    h.push(text_buffer(text)).expect("push text");
    let mut buffers = Vec::new();
    until_speech(&mut h, &mut buffers);
    paced(&mut h, &mut buffers, 30);
    let pause = Pause {
        utterance_id: Some(5),
        max_duration: Some(gst::ClockTime::from_mseconds(200)),
    };
    h.push_event(pause.to_event());
    let paused_from = buffers.len();
    paced(&mut h, &mut buffers, 40);
    // Silent from the third buffer on, for about 200 ms, then speaking again by itself.
    let silent = buffers[paused_from + 2..]
        .iter()
        .take_while(|b| !loud(b))
        .count();
    assert!(
        (17..=20).contains(&silent),
        "{silent} silent buffers for a 200 ms pause"
    );
    assert!(buffers[paused_from + 2 + silent..].iter().any(loud));
    // Paused again, then a yield: no audio at all after the pause (nothing left to fade).
    h.push_event(Pause::default().to_event());
    paced(&mut h, &mut buffers, 3);
    let yielded_from = buffers.len();
    h.push_event(Yield::default().to_event());
    paced(&mut h, &mut buffers, 20);
    assert!(buffers[yielded_from..].iter().all(|b| !loud(b)));
    let progress = upstream_progress(&mut h);
    let interrupted = progress
        .iter()
        .find(|p| p.reason == ProgressReason::Interrupted)
        .expect("the yield reports what was heard");
    assert!(interrupted.characters > 0 && interrupted.characters < text.len() as u64);
    // A pause naming another utterance does nothing.
    let mut other = harness(&[("is-live", "true")]);
    other.push_event(Speak { utterance_id: 8 }.to_event());
    let stray = Pause {
        utterance_id: Some(9),
        max_duration: None,
    };
    other.push_event(stray.to_event());
    other.push(text_buffer("Hello there.")).expect("push");
    until_speech(&mut other, &mut Vec::new());
}

#[test]
fn prepared_phrases_start_without_a_synthesis() {
    init();
    // Not live, so the time to first audio is the synthesis alone.
    let first_audio = |prepare: bool| {
        let mut h = harness(&[]);
        if prepare {
            let phrases = vec!["One moment.".to_owned()];
            h.push_event(
                Prepare {
                    phrases,
                    partial: false,
                }
                .to_event(),
            );
            // The worker prepares while the element is idle.
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        let started = std::time::Instant::now();
        h.push_event(Speak { utterance_id: 1 }.to_event());
        h.push(text_buffer("One moment.")).expect("push");
        loop {
            let buffer = h.pull().expect("audio");
            if loud(&buffer) {
                break started.elapsed();
            }
        }
    };
    let cold = first_audio(false);
    let warm = first_audio(true);
    eprintln!("first audio of a filler: {cold:?} synthesised, {warm:?} prepared");
    assert!(
        warm * 4 < cold,
        "prepared {warm:?} is not much sooner than synthesised {cold:?}"
    );
}

#[test]
fn flush_reports_what_was_heard_and_restarts_at_zero() {
    init();
    let mut h = harness(&[]);
    h.push_event(Speak { utterance_id: 5 }.to_event());
    h.push(text_buffer(
        "This long sentence is cut by a flush before it can end properly.",
    ))
    .expect("push text");
    for _ in 0..30 {
        h.pull().expect("audio before the flush");
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let progress = upstream_progress(&mut h);
    let interrupted = progress
        .iter()
        .find(|p| p.reason == ProgressReason::Interrupted)
        .expect("an interrupted progress after the flush");
    assert_eq!(interrupted.utterance_id, 5);
    assert!(interrupted.characters < 64, "{interrupted:?}");

    // After the flush, a new utterance plays from running time 0.
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    h.push_event(gst::event::Segment::new(&segment));
    h.push_event(Speak { utterance_id: 6 }.to_event());
    h.push(text_buffer("Hello again.")).expect("push text");
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);
    let restart = out
        .buffers
        .iter()
        .rposition(|b| b.flags().contains(gst::BufferFlags::DISCONT))
        .expect("a discontinuity after the flush");
    let after = &out.buffers[restart..];
    assert_continuous(after, gst::ClockTime::ZERO);
    let seconds = after.iter().map(|b| b.size() / 2).sum::<usize>() as f64 / f64::from(RATE);
    assert!((0.4..2.0).contains(&seconds), "{seconds} s for two words");
    let completed = out.progress.last().expect("progress");
    assert_eq!(
        (completed.utterance_id, completed.reason),
        (6, ProgressReason::Completed)
    );
    assert_eq!(completed.characters, 12);
}

#[test]
fn backchannel_is_spoken_when_idle_without_progress() {
    init();
    let mut h = harness(&[]);
    h.push_event(
        interaction_protocol::events::Backchannel {
            text: "mm-hm".into(),
        }
        .to_event(),
    );
    let first = h.pull().expect("the back-channel plays");
    assert_eq!(first.pts(), Some(gst::ClockTime::ZERO));
    h.push_event(gst::event::Eos::new());
    let mut out = pull_until_eos(&mut h);
    out.buffers.insert(0, first);
    let samples: Vec<f32> = out.buffers.iter().flat_map(|b| samples(b)).collect();
    let seconds = samples.len() as f64 / f64::from(RATE);
    assert!((0.2..1.5).contains(&seconds), "{seconds} s");
    assert!(rms(&samples) > 0.01);
    assert!(
        out.progress.is_empty(),
        "a back-channel is no utterance: {:?}",
        out.progress
    );
}

#[test]
fn timestamped_text_is_not_spoken_before_its_running_time() {
    init();
    let mut h = harness(&[]);
    let mut buffer = text_buffer("Now.");
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(2));
    h.push(buffer).expect("push text");
    h.push_event(gst::event::Eos::new());
    let out = pull_until_eos(&mut h);
    assert_continuous(&out.buffers, gst::ClockTime::ZERO);
    let first_sound = out
        .samples
        .iter()
        .position(|s| s.abs() > 1e-4)
        .expect("speech");
    let seconds = first_sound as f64 / f64::from(RATE);
    assert!(
        (2.0..2.3).contains(&seconds),
        "speech starts at {seconds} s"
    );
}
