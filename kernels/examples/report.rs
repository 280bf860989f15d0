//! Speed report: each front-end against the numpy reference in the same run, and the FFT's
//! achieved FLOP rate against this machine's measured peak.
//!
//! Run: `cargo run --release -p kernels --example report` (needs the project venv for numpy,
//! as the tests do; `--no-numpy` skips that column).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kernels::{
    DmelConfig, DmelStream, EfficientNetInput, FrameSpectrum, Patchify, RgbFrame, SileroFramer,
    SpectrumKind, WhisperLogMel, WhisperLogMelStream, real_fft_flops,
};
use realfft::RealFftPlanner;

/// Time per call in microseconds: the fastest of many short rounds (about 0.5 ms each, for
/// at most ~1 s), so that rounds disturbed by other processes on a shared machine drop out.
fn time_us(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64();
    let reps = ((5e-4 / once.max(1e-9)) as usize).clamp(1, 100_000);
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 20 || (start.elapsed().as_secs_f64() < 1.0 && rounds < 2000) {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
        rounds += 1;
    }
    best
}

/// Peak f32 FLOP rate of one core, measured with independent FMA chains (GFLOP/s), for the
/// widest vector unit this CPU has, and for AVX2 (the widest rustfft uses).
#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;
    use std::time::Instant;

    const ITERS: usize = 2_000_000;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma256(seed: f32) -> f32 {
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(seed); 12];
        for _ in 0..ITERS / 10 {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for x in acc {
            s = _mm256_add_ps(s, x);
        }
        let mut out = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(seed: f32) -> f32 {
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(seed); 12];
        for _ in 0..ITERS / 10 {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for x in acc {
            s = _mm512_add_ps(s, x);
        }
        _mm512_reduce_add_ps(s)
    }

    fn rate(lanes: usize, f: impl Fn() -> f32) -> f64 {
        std::hint::black_box(f());
        let mut best = f64::INFINITY;
        for _ in 0..40 {
            let t = Instant::now();
            std::hint::black_box(f());
            best = best.min(t.elapsed().as_secs_f64());
        }
        (ITERS / 10 * 12 * lanes * 2) as f64 / best / 1e9
    }

    /// (AVX2+FMA GFLOP/s, AVX-512 GFLOP/s) where available.
    pub fn measure() -> (Option<f64>, Option<f64>) {
        let avx2 = (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            .then(|| rate(8, || unsafe { fma256(std::hint::black_box(1.0)) }));
        let avx512 = is_x86_feature_detected!("avx512f")
            .then(|| rate(16, || unsafe { fma512(std::hint::black_box(1.0)) }));
        (avx2, avx512)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod peak {
    pub fn measure() -> (Option<f64>, Option<f64>) {
        (None, None)
    }
}

fn python() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let cache = non_empty("GST_INTERACTION_CACHE")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("gst-interaction")))
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache/gst-interaction")))?;
    let py = cache.join("venv/bin/python");
    py.exists().then_some(py)
}

/// numpy's times (µs) from `reference.py bench`, by name.
fn numpy_times() -> Vec<(String, f64)> {
    let Some(py) = python() else {
        eprintln!("no project venv: numpy column left empty (run `make setup`)");
        return Vec::new();
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/reference.py");
    // One core for numpy too: no BLAS thread pools.
    let mut cmd = Command::new(py);
    for var in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        cmd.env(var, "1");
    }
    let out = match cmd.arg(script).arg("bench").output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "reference.py bench failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return Vec::new();
        }
        Err(e) => {
            eprintln!("cannot run reference.py: {e}");
            return Vec::new();
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, us) = l.split_once(' ')?;
            Some((name.to_string(), us.trim().parse().ok()?))
        })
        .collect()
}

fn main() {
    let with_numpy = !std::env::args().any(|a| a == "--no-numpy");
    let audio: Vec<f32> = (0..160_000)
        .map(|i| (i as f32 * 0.031).sin() * 0.3 + ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05)
        .collect();
    let turn = &audio[..3200];

    // Steady-state micro-turns: the stream has seen audio before.
    let mut whisper = WhisperLogMelStream::new(16_000).expect("stream");
    whisper.push(&audio[..16_000], &mut |_| {}).expect("push");
    let mut sink = 0.0f32;
    let whisper_turn = time_us(|| {
        whisper
            .push(black_box(turn), &mut |f| sink += f[0])
            .expect("push");
    });
    // The same frames mel-major ([80][frames], Whisper's input layout; numpy's result is too).
    let mut whisper_rows = WhisperLogMelStream::new(16_000).expect("stream");
    whisper_rows
        .push(&audio[..16_000], &mut |_| {})
        .expect("push");
    let whisper_rows_turn = time_us(|| {
        whisper_rows
            .push_rows(black_box(turn), &mut |b| {
                sink += b.row(0).map_or(0.0, |r| r[0])
            })
            .expect("push");
    });
    let mut dmel = DmelStream::new(DmelConfig::default()).expect("dmel");
    let dmel_turn = time_us(|| {
        dmel.push(black_box(turn), &mut |f| sink += f32::from(f[0]))
            .expect("push");
    });
    let mut silero = SileroFramer::new(16_000).expect("silero");
    let silero_turn = time_us(|| {
        silero
            .push(black_box(turn), &mut |f| sink += f[0])
            .expect("push");
    });
    let mut offline = WhisperLogMel::new();
    let mut st = vec![0.0; 80 * 800];
    let smart_turn = time_us(|| {
        offline
            .smart_turn_into(black_box(&audio), &mut st)
            .expect("st")
    });
    let mut mel = vec![0.0; 80 * 3000];
    let whisper_30s = time_us(|| {
        offline
            .compute_into(black_box(&audio), 3000, &mut mel)
            .expect("mel")
    });
    let img: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let frame = RgbFrame::packed_rgb(&img, 640, 480);
    let patchify = Patchify::default_40();
    let mut patches = vec![0.0; 192 * 4800];
    let patch_us = time_us(|| {
        patchify
            .run(black_box(&frame), &mut patches)
            .expect("patches")
    });
    let mut effnet = EfficientNetInput::new();
    let mut input = vec![0.0; EfficientNetInput::OUTPUT_LEN];
    let effnet_us = time_us(|| effnet.run(black_box(&frame), &mut input).expect("effnet"));
    black_box(sink);

    let numpy = if with_numpy {
        numpy_times()
    } else {
        Vec::new()
    };
    let np = |name: &str| numpy.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
    let rows: [(&str, &str, f64, Option<f64>); 9] = [
        (
            "Whisper log-mel, one micro-turn (3200 samples → 20 frames), `[80][frames]` (`push_rows`)",
            "whisper_turn",
            whisper_rows_turn,
            np("whisper_turn"),
        ),
        (
            "Whisper log-mel, one micro-turn, frame-major (`push`)",
            "whisper_turn",
            whisper_turn,
            np("whisper_turn"),
        ),
        (
            "dMel, one micro-turn (3200 samples → 16 frames)",
            "dmel_turn",
            dmel_turn,
            np("dmel_turn"),
        ),
        (
            "Silero framing, one micro-turn",
            "silero_turn",
            silero_turn,
            None,
        ),
        (
            "Smart Turn features (8 s → 80×800)",
            "smart_turn",
            smart_turn,
            np("smart_turn"),
        ),
        (
            "Whisper features, 30 s window (80×3000)",
            "whisper_30s",
            whisper_30s,
            np("whisper_30s"),
        ),
        (
            "Patchify 640×480 → 192 × 40×40×3",
            "patchify_640x480",
            patch_us,
            np("patchify_640x480"),
        ),
        (
            "EfficientNet-Lite0 input from 640×480",
            "efficientnet_640x480",
            effnet_us,
            np("efficientnet_640x480"),
        ),
        ("(budget: one micro-turn)", "-", 200_000.0, None),
    ];
    println!("| Front-end | Rust (µs) | numpy (µs) | numpy / Rust |");
    println!("|---|---:|---:|---:|");
    for (label, _, rust, numpy) in &rows[..8] {
        match numpy {
            Some(n) => println!("| {label} | {rust:.2} | {n:.1} | {:.1}× |", n / rust),
            None => println!("| {label} | {rust:.2} | – | – |"),
        }
    }

    // The FFT part alone, against the measured peak.
    let (avx2, avx512) = peak::measure();
    println!();
    println!(
        "| FFT part (f32, one frame) | ns | GFLOP/s (2.5 N log2 N) | % of AVX2 FMA peak | % of AVX-512 FMA peak |"
    );
    println!("|---|---:|---:|---:|---:|");
    let pct =
        |g: f64, p: Option<f64>| p.map_or("–".to_string(), |p| format!("{:.1} %", 100.0 * g / p));
    // The path the front-ends use: frames batched 8 to a SIMD register (one frame per lane),
    // all-in time per frame (window, FFT, split, |X|² or |X|, mel, log10), counting only the
    // FFT's flops.
    for (label, n, us_per_frame) in [
        (
            "batched Whisper frame, all-in (30 s window / 3000)",
            400usize,
            whisper_30s / 3000.0,
        ),
        (
            "batched Whisper frame, all-in (micro-turn `[80][frames]` / 20)",
            400,
            whisper_rows_turn / 20.0,
        ),
        (
            "batched dMel frame, all-in (micro-turn / 16)",
            1024,
            dmel_turn / 16.0,
        ),
    ] {
        let g = real_fft_flops(n) / (us_per_frame * 1e3);
        println!(
            "| {label}, N = {n} | {:.0} | {g:.2} | {} | {} |",
            us_per_frame * 1e3,
            pct(g, avx2),
            pct(g, avx512)
        );
    }
    for n in [400usize, 1024] {
        let signal: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let flops = real_fft_flops(n);
        // Ours: window, complex FFT of N/2 (rustfft), split step, |X|².
        let mut spectrum = FrameSpectrum::new(n, n, SpectrumKind::Power).expect("spectrum");
        let ours = time_us(|| {
            black_box(spectrum.compute_checked(black_box(&signal)).expect("frame"));
        });
        // The complex FFT of N/2 alone.
        let fft = rustfft::FftPlanner::<f32>::new().plan_fft_forward(n / 2);
        let mut buf: Vec<rustfft::num_complex::Complex<f32>> = signal
            .chunks_exact(2)
            .map(|p| rustfft::num_complex::Complex::new(p[0], p[1]))
            .collect();
        let mut scratch = vec![Default::default(); fft.get_inplace_scratch_len()];
        let complex = time_us(|| fft.process_with_scratch(black_box(&mut buf), &mut scratch));
        // realfft's real-to-complex transform, for comparison.
        let real = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        let mut input = real.make_input_vec();
        let mut output = real.make_output_vec();
        let mut rscratch = real.make_scratch_vec();
        let realfft_us = time_us(|| {
            input.copy_from_slice(&signal);
            real.process_with_scratch(&mut input, &mut output, &mut rscratch)
                .expect("fft");
            black_box(&output);
        });
        for (label, us) in [
            (
                format!("kernel spectrum N = {n} (window + FFT + split + |X|²)"),
                ours,
            ),
            (
                format!("  of which complex FFT N/2 = {} (rustfft)", n / 2),
                complex,
            ),
            (format!("realfft real FFT N = {n} (comparison)"), realfft_us),
        ] {
            let g = flops / (us * 1e3);
            println!(
                "| {label} | {:.0} | {g:.2} | {} | {} |",
                us * 1e3,
                pct(g, avx2),
                pct(g, avx512)
            );
        }
    }
    println!();
    println!(
        "Measured single-core peak: AVX2+FMA {} GFLOP/s, AVX-512 {} GFLOP/s (12 independent FMA chains).",
        avx2.map_or("n/a".into(), |v| format!("{v:.1}")),
        avx512.map_or("n/a".into(), |v| format!("{v:.1}"))
    );
}
