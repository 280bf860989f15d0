//! Whisper tiny.en speed on this machine: real-time factor and decoder cost per token, with
//! the KV-cache decoder against full recomputation (the baseline) in the same process.
//!
//!     cargo bench -p gst-interaction-asr --bench whisper
//!
//! Environment: WHISPER_BENCH_THREADS (comma-separated ONNX Runtime intra-op thread counts to
//! compare, default "1,2"; 0 = ONNX Runtime's choice), WHISPER_BENCH_WINDOWS (comma-separated
//! window lengths in log-mel frames, default "3000,1000": Whisper's 30 s and a 10 s window),
//! WHISPER_BENCH_GRAPHS (default "f32,int8": the converted graphs and their int8 copies),
//! WHISPER_BENCH_RUNS (timed runs per utterance, default 5). The machine's load average is
//! printed before and after, since other work on the same cores changes every number.

use std::path::Path;
use std::time::{Duration, Instant};

use interaction_asr::{Whisper, WhisperFiles, WhisperOptions, default_model_dir};

const UTTERANCES: [&str; 2] = [
    "Please turn off the lights in the kitchen.",
    "I would like to book a table for two people on Friday evening, and could you also tell me \
     what the weather will be like this weekend, because we are planning a long walk by the sea.",
];

fn espeak_16k(text: &str, dir: &Path, name: &str) -> Vec<f32> {
    let raw = dir.join(format!("{name}.espeak.wav"));
    test_audio::espeak(text, &[], &raw).unwrap();
    test_audio::read_16k(&raw, &[]).unwrap()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let thread_counts: Vec<usize> = std::env::var("WHISPER_BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let runs: usize = std::env::var("WHISPER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = std::env::temp_dir().join("gst-interaction-whisper-bench");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let audio: Vec<Vec<f32>> = UTTERANCES
        .iter()
        .enumerate()
        .map(|(index, text)| espeak_16k(text, &dir, &format!("utterance{index}")))
        .collect();
    println!(
        "whisper bench: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let windows: Vec<usize> = std::env::var("WHISPER_BENCH_WINDOWS")
        .unwrap_or_else(|_| "3000,1000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    // The f32 graphs and their int8 copies (the element's default), in the same process: the
    // f32 rows are the baseline of the int8 speed-up.
    let graphs: Vec<String> = std::env::var("WHISPER_BENCH_GRAPHS")
        .unwrap_or_else(|_| "f32,int8".into())
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| v == "f32" || v == "int8")
        .collect();
    for threads in thread_counts {
        for &window_frames in &windows {
            for graph in &graphs {
                bench(graph, threads, window_frames, runs, &audio);
            }
        }
    }
    println!(
        "(medians of {runs} runs; RTF = transcription time / audio duration; load average now {})",
        load_average()
    );
}

fn bench(graph: &str, threads: usize, window_frames: usize, runs: usize, utterances: &[Vec<f32>]) {
    let options = WhisperOptions {
        threads,
        window_frames,
        ..WhisperOptions::default()
    };
    let start = Instant::now();
    let files = if graph == "int8" {
        WhisperFiles::int8_in_dir(default_model_dir())
    } else {
        WhisperFiles::in_dir(default_model_dir())
    };
    let mut whisper = match Whisper::load_files(&files, &options) {
        Ok(whisper) => whisper,
        Err(error) => {
            eprintln!("whisper bench: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "\n{graph} graphs, threads={threads} (0 = ONNX Runtime default), window {window_frames} frames, load {:.0} ms",
        ms(start.elapsed())
    );
    println!(
        "| audio | decoder steps | log-mel ms | encoder ms | decoder ms | ms/step (KV cache) | ms/step (no cache, baseline) | cache speed-up | total ms | RTF |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for audio in utterances {
        let seconds = audio.len() as f64 / 16_000.0;
        whisper.transcribe(audio).expect("warm-up");
        let (mut features, mut encoder, mut decoder, mut total) = (vec![], vec![], vec![], vec![]);
        let mut tokens = 0;
        let mut text = String::new();
        for _ in 0..runs {
            let start = Instant::now();
            let transcript = whisper.transcribe(audio).expect("transcribe");
            total.push(start.elapsed());
            features.push(transcript.timings.features);
            encoder.push(transcript.timings.encoder);
            decoder.push(transcript.timings.decoder);
            tokens = transcript.timings.decoder_steps;
            text = transcript.text;
        }
        let mel = kernels::whisper::whisper_log_mel(audio, window_frames).expect("log-mel");
        let mut uncached = vec![];
        for _ in 0..runs.min(3) {
            uncached.push(
                whisper
                    .transcribe_mel_without_cache(&mel)
                    .expect("no cache")
                    .timings
                    .decoder,
            );
        }
        let per_token = ms(median(decoder.clone())) / tokens as f64;
        let per_token_uncached = ms(median(uncached)) / tokens as f64;
        let total = median(total);
        println!(
            "| {seconds:.1} s | {tokens} | {:.1} | {:.0} | {:.0} | {per_token:.2} | {per_token_uncached:.2} | {:.2}x | {:.0} | {:.3} |",
            ms(median(features)),
            ms(median(encoder)),
            ms(median(decoder)),
            per_token_uncached / per_token,
            ms(total),
            total.as_secs_f64() / seconds,
        );
        eprintln!("    {text}");
    }
}
