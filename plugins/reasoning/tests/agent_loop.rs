//! The loop of DESIGN §2 with the real elements: `microturnmux → interactionmodel →
//! reasoningsidecar → microturnmux`. A spoken question (espeak-ng) is played live, at
//! real-time pace, into the aligner; the interaction model asks the sidecar at the end of the
//! turn; the sidecar's answer goes back into the aligner through its loop-back pad and the
//! interaction model uses it. The pipeline answers a latency query while the loop runs,
//! reaches EOS after the user audio ends, and shuts down without deadlock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use interaction_protocol::events::messages;

const RATE: u64 = 16_000;
const CHUNK: usize = 320;
const CHUNK_NS: u64 = CHUNK as u64 * 1_000_000_000 / RATE;

fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstmicroturn::plugin_register_static().expect("microturn registers");
        gstinteraction::plugin_register_static().expect("interaction registers");
        gstreasoning::plugin_register_static().expect("reasoning registers");
    });
}

/// `text` spoken by espeak-ng, 16 kHz mono f32 (sox converts).
fn speech(text: &str) -> Vec<f32> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-loop");
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("question.wav");
    test_audio::espeak(text, &["-v", "en-us", "-s", "165"], &wav).unwrap();
    test_audio::read_16k(&wav, &[]).unwrap()
}

#[test]
fn the_whole_loop_answers_reaches_eos_and_stops() {
    init();
    let mut audio = vec![0.0f32; 8_000];
    audio.extend(speech("What is the capital of France?"));
    // Then silence until the answer has come back through the loop (at most a minute: a
    // loaded 2-core machine takes several seconds for the first token), then EOS.
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let most_silence = 16_000 * 60;

    let pipeline = gst::parse::launch(&format!(
        "appsrc name=user is-live=true format=time min-latency={CHUNK_NS} \
           caps=audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved \
         ! queue ! microturnmux name=mux start-time-selection=first latency=60000000 \
         ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000 \
         ! interactionmodel name=im filler-ms=0 \
         im.speech ! queue ! fakesink sync=false async=false \
         im.transcript ! queue ! fakesink sync=false async=false \
         im.reasoning ! queue ! reasoningsidecar name=sidecar max-tokens=16 ! mux.text_0"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let mux = pipeline.by_name("mux").unwrap();
    mux.static_pad("text_0")
        .unwrap()
        .set_property("loopback", true);
    let source = pipeline
        .by_name("user")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (started, _, _) = pipeline.state(gst::ClockTime::from_seconds(120));
    started.expect("the models load and the pipeline plays");

    let clock = pipeline.clock().unwrap();
    let base = pipeline.base_time().unwrap();
    let t0 = (clock.time().saturating_sub(base).nseconds() / CHUNK_NS + 5) * CHUNK_NS;
    let pusher = {
        let source = source.clone();
        let clock = clock.clone();
        let answered = answered.clone();
        std::thread::spawn(move || {
            let silence = vec![0.0f32; CHUNK];
            let chunks = audio
                .chunks(CHUNK)
                .chain(std::iter::repeat_n(&silence[..], most_silence / CHUNK))
                .enumerate();
            let question_chunks = audio.len().div_ceil(CHUNK);
            let mut answered_at = None;
            for (index, chunk) in chunks {
                // One more second after the answer was used, then EOS.
                if index >= question_chunks
                    && answered_at.is_none()
                    && answered.load(std::sync::atomic::Ordering::SeqCst)
                {
                    answered_at = Some(index);
                }
                if answered_at.is_some_and(|at| index >= at + 16_000 / CHUNK) {
                    break;
                }
                let pts = t0 + index as u64 * CHUNK_NS;
                let _ = clock
                    .new_single_shot_id(base + gst::ClockTime::from_nseconds(pts + CHUNK_NS))
                    .wait();
                let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                let mut buffer = gst::Buffer::from_mut_slice(bytes);
                let b = buffer.get_mut().unwrap();
                b.set_pts(gst::ClockTime::from_nseconds(pts));
                b.set_duration(gst::ClockTime::from_nseconds(CHUNK_NS));
                if source.push_buffer(buffer).is_err() {
                    return;
                }
            }
            let _ = source.end_of_stream();
        })
    };

    // While the loop runs, the latency query comes back at once.
    std::thread::sleep(Duration::from_secs(1));
    let mut query = gst::query::Latency::new();
    let asked = Instant::now();
    assert!(pipeline.query(&mut query), "the latency query is answered");
    assert!(asked.elapsed() < Duration::from_secs(2));
    // The aligner sees the loop as live (its sources: the user's appsrc and the sidecar).
    let mut query = gst::query::Latency::new();
    assert!(mux.static_pad("src").unwrap().query(&mut query));
    let (live, min, _) = query.result();
    assert!(live, "the aligner's inputs are live");
    assert!(
        min >= gst::ClockTime::from_mseconds(200),
        "one turn at least: {min}"
    );

    let bus = pipeline.bus().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut eos = false;
    while Instant::now() < deadline {
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => {
                eos = true;
                break;
            }
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    if s.name() == messages::RESULT_USED {
                        answered.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    seen.lock().unwrap().push(s.name().to_string());
                }
            }
            _ => {}
        }
    }
    pusher.join().unwrap();
    assert!(eos, "EOS after the user audio");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|n| n == messages::USER_TURN_ENDED),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|n| n == messages::REASONING_REQUESTED),
        "{seen:?}"
    );
    // The answer came back through the aligner and the interaction model used it.
    assert!(seen.iter().any(|n| n == messages::RESULT_USED), "{seen:?}");
    let stats = mux.property::<gst::Structure>("stats");
    assert!(stats.get::<u64>("timed-out-turns").unwrap() <= 1, "{stats}");

    let stopping = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        stopping.elapsed()
    );
}
