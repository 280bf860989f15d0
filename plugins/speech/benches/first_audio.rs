//! Time to first audio and real-time factor of `speechsynth` (run with `cargo bench -p
//! gst-plugin-speech`, or `make bench`).
//!
//! For each configuration, a 10-word phrase is pushed into the element (non-live, in a
//! `gst_check::Harness`) and the wall-clock time is taken until the first audio buffer leaves
//! the source pad (time to first audio) and until EOS (the whole phrase; divided by the audio
//! duration it gives the real-time factor). The espeak-ng backend is measured in the same
//! process as the baseline, and the Piper model alone (phonemes excluded) beside it.

use std::time::{Duration, Instant};

use gstspeech::voice::{PiperVoice, SynthParams, SynthesisSink, Voice};

/// CPU time this thread has run, from /proc/thread-self/schedstat (ns). With one ONNX Runtime
/// thread the model runs on the calling thread, so this is what the synthesis costs on an idle
/// core, whatever else the machine is doing.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Notes when the first piece of audio arrives.
struct FirstPiece {
    start: Instant,
    cpu_start: Duration,
    first: Option<Duration>,
    first_cpu: Option<Duration>,
    samples: usize,
}

impl SynthesisSink for FirstPiece {
    fn word_ends(&mut self, _ends: Vec<usize>) {}

    fn audio(&mut self, samples: &[f32]) -> bool {
        self.first.get_or_insert(self.start.elapsed());
        self.first_cpu.get_or_insert(thread_cpu() - self.cpu_start);
        self.samples += samples.len();
        true
    }
}

const PHRASE: &str = "Please turn off the lights in the kitchen before bed.";
const RUNS: usize = 7;

struct Measure {
    first_audio: Duration,
    total: Duration,
    audio_seconds: f64,
}

fn run_once(properties: &[(&str, &str)]) -> Measure {
    let mut builder = gst::ElementFactory::make("speechsynth");
    for (name, value) in properties {
        builder = builder.property_from_str(name, value);
    }
    let element = builder.build().expect("speechsynth");
    // Starting the harness loads the voice; the clock starts after that.
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str("text/x-raw,format=utf8");
    let start = Instant::now();
    h.push(gst::Buffer::from_slice(PHRASE.as_bytes().to_vec()))
        .expect("push");
    h.push_event(gst::event::Eos::new());
    let first = h.pull().expect("first audio");
    let first_audio = start.elapsed();
    let mut bytes = first.size();
    while let Some(buffer) = h.pull_until_eos().expect("audio") {
        bytes += buffer.size();
    }
    let total = start.elapsed();
    Measure {
        first_audio,
        total,
        audio_seconds: (bytes / 2) as f64 / 22_050.0,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(name: &str, properties: &[(&str, &str)]) -> (f64, f64) {
    run_once(properties); // warm-up: file cache, ONNX Runtime's first run
    let runs: Vec<Measure> = (0..RUNS).map(|_| run_once(properties)).collect();
    let first_ms = median(
        runs.iter()
            .map(|m| m.first_audio.as_secs_f64() * 1000.0)
            .collect(),
    );
    let rtf = median(
        runs.iter()
            .map(|m| m.total.as_secs_f64() / m.audio_seconds)
            .collect(),
    );
    let audio = median(runs.iter().map(|m| m.audio_seconds).collect());
    println!(
        "{name:<44} first audio {first_ms:7.1} ms   whole phrase RTF {rtf:.3}   ({audio:.2} s of audio, median of {RUNS})"
    );
    (first_ms, rtf)
}

fn main() {
    gst::init().expect("GStreamer");
    gstspeech::plugin_register_static().expect("plugin");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "speechsynth benchmark: 10-word phrase {PHRASE:?}, {cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let (espeak_first, espeak_rtf) = report("espeak backend (baseline)", &[("backend", "espeak")]);
    let (default_first, default_rtf) = report(
        "piper, the element's defaults (threads=0)",
        &[("sentence-silence", "0")],
    );
    let (piper_first, piper_rtf) = report(
        "piper, default voice, threads=2",
        &[("threads", "2"), ("sentence-silence", "0")],
    );
    let (one_first, one_rtf) = report(
        "piper, default voice, threads=1",
        &[("threads", "1"), ("sentence-silence", "0")],
    );
    let (fast_first, _) = report(
        "piper, threads=2, first-phrase-words=4",
        &[
            ("threads", "2"),
            ("sentence-silence", "0"),
            ("first-phrase-words", "4"),
        ],
    );
    println!(
        "ratios: piper/espeak first audio {:.1}x, RTF {:.1}x; first-phrase-words=4 / default first audio {:.2}x",
        piper_first / espeak_first,
        piper_rtf / espeak_rtf,
        fast_first / piper_first
    );
    println!(
        "goals: first audio <= 100 ms: defaults {default_first:.0} ms (threads=2: {piper_first:.0} ms, threads=1: {one_first:.0} ms, first-phrase-words=4: {fast_first:.0} ms); RTF <= 0.15: defaults {default_rtf:.3} (threads=2: {piper_rtf:.3}, threads=1: {one_rtf:.3})"
    );

    // The model alone: phonemes are made once, the ONNX run is timed.
    let path = interaction_runtime::model_file("piper/en_US-joe-medium.onnx").expect("voice");
    for threads in [1, 2] {
        let mut voice = PiperVoice::load(&path, threads).expect("load voice");
        let ids = voice.phoneme_ids(PHRASE).expect("phonemes");
        let params = SynthParams::default();
        let mut rtfs = Vec::new();
        let mut firsts = Vec::new();
        let mut cpu_rtfs = Vec::new();
        let mut cpu_firsts = Vec::new();
        for _ in 0..RUNS {
            let mut sink = FirstPiece {
                start: Instant::now(),
                cpu_start: thread_cpu(),
                first: None,
                first_cpu: None,
                samples: 0,
            };
            voice
                .run(ids.clone(), &params, &mut sink)
                .expect("synthesis");
            let audio_seconds = sink.samples as f64 / 22_050.0;
            rtfs.push(sink.start.elapsed().as_secs_f64() / audio_seconds);
            firsts.push(sink.first.unwrap_or_default().as_secs_f64() * 1000.0);
            cpu_rtfs.push((thread_cpu() - sink.cpu_start).as_secs_f64() / audio_seconds);
            cpu_firsts.push(sink.first_cpu.unwrap_or_default().as_secs_f64() * 1000.0);
        }
        if threads == 1 {
            println!(
                "piper model alone, 1 thread, CPU time of the calling thread (= an idle core): first piece {:.1} ms, RTF {:.3}",
                median(cpu_firsts),
                median(cpu_rtfs)
            );
        }
        let phonemes = {
            let start = Instant::now();
            voice.phoneme_ids(PHRASE).expect("phonemes");
            start.elapsed().as_secs_f64() * 1000.0
        };
        println!(
            "piper model alone, {threads} thread(s), {}: first piece {:.1} ms, RTF {:.3} (median of {RUNS}); espeak-ng phonemes {phonemes:.1} ms; rate {} Hz",
            if voice.is_streaming() {
                "split graphs, pieces"
            } else {
                "whole model"
            },
            median(firsts),
            median(rtfs),
            voice.sample_rate()
        );
    }
}
