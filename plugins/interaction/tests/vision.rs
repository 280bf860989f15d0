//! The visual observations: EfficientNet-Lite0 on a real photo (against the converter's
//! independent numpy forward pass), video micro-turns through the element into the context
//! package, and the refusals (bad frames, a package without its vision files).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gstinteraction::device::{CPU_PROVIDER, Device, Provider};
use gstinteraction::vision::{self, Classifier, VisionWorker};
use interaction_protocol::packet::{Header, PacketWriter, packet_flags, video_flags};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default package of this source tree (its files resolve in the cache), so that the test
/// does not depend on the copy `scripts/setup.sh` installed.
fn source_package() -> PathBuf {
    gstinteraction::package::source_packages_dir().join("cascade-default")
}

fn cpu() -> Provider {
    Provider {
        name: CPU_PROVIDER,
        device: Device::Cpu,
        fallback_reason: None,
    }
}

/// `models/efficientnet/testdata/pcb.png` (a circuit-board photo, 240 × 160) as packed RGB8.
fn photo() -> (Vec<u8>, u32, u32) {
    let path = workspace_root().join("models/efficientnet/testdata/pcb.png");
    let decoder = png::Decoder::new(std::fs::File::open(&path).expect("the test photo"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut data = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut data).expect("PNG pixels");
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    data.truncate(info.buffer_size());
    (data, info.width, info.height)
}

#[test]
fn efficientnet_names_a_real_photo_as_the_numpy_reference_does() {
    let package = gstinteraction::package::load(&source_package()).expect("the default package");
    let model = package.file("vision").unwrap().to_path_buf();
    let labels = vision::read_labels(package.file("vision-labels").unwrap()).unwrap();
    assert_eq!(labels.len(), 1000);
    assert_eq!(
        (&*labels[0], &*labels[526], &*labels[662], &*labels[999]),
        ("tench", "desk", "modem", "toilet tissue")
    );
    let mut classifier = Classifier::open(&model, labels.clone(), &cpu()).expect("the model");
    let (data, width, height) = photo();
    let (features, probabilities) = classifier
        .probabilities(&data, width as usize, height as usize)
        .unwrap();
    assert_eq!((features.len(), probabilities.len()), (1280, 1000));
    let top = classifier
        .classify(&data, width as usize, height as usize, 3)
        .unwrap();
    let names: Vec<&str> = top.classes.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(names, ["modem", "oscilloscope", "hard disc"], "{top:?}");
    assert_eq!(top.classes[0].index, 662);
    assert!(top.classes[0].probability > 0.8, "{top:?}");

    // The converter's check: an independent numpy forward pass of the unfolded weights
    // against ONNX Runtime in Python, then the same probabilities from the Rust path.
    let python = std::env::var("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| interaction_runtime::cache_root().join("venv/bin/python"));
    let photo_path = workspace_root().join("models/efficientnet/testdata/pcb.png");
    let output = Command::new(&python)
        .arg(workspace_root().join("models/efficientnet/convert.py"))
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .arg("--check")
        .arg(&photo_path)
        .output()
        .unwrap_or_else(|e| panic!("could not run {python:?} (scripts/setup.sh makes it): {e}"));
    assert!(
        output.status.success(),
        "convert.py --check failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let report = &report[0];
    let feature_error = report["max_abs_error_features"].as_f64().unwrap();
    let logit_error = report["max_abs_error_logits"].as_f64().unwrap();
    println!("ONNX vs numpy: max abs error features {feature_error:.2e}, logits {logit_error:.2e}");
    assert!(feature_error < 1e-4 && logit_error < 1e-4, "{report}");
    for entry in report["top"].as_array().unwrap() {
        let class = entry["class"].as_u64().unwrap() as usize;
        let python_p = entry["probability"].as_f64().unwrap() as f32;
        // The same front end in Rust (f32) and numpy (f64): the probabilities agree closely.
        assert!(
            (probabilities[class] - python_p).abs() < 2e-3,
            "class {class}: Rust {} Python {python_p}",
            probabilities[class]
        );
    }
    assert_eq!(report["top"][0]["class"], 662);

    // Any frame size works (the resize takes it); an impossible one is an error, not a panic.
    let tiny = classifier.classify(&[200, 10, 10, 10, 200, 10, 10, 10, 200], 3, 1, 1);
    assert_eq!(tiny.expect("a 3x1 frame").classes.len(), 1);
    let short = classifier.classify(&data[..100], width as usize, height as usize, 3);
    assert!(
        short.as_ref().is_err_and(|e| e.contains("frame data")),
        "{short:?}"
    );
    let empty = classifier.classify(&[], 0, 0, 3);
    assert!(empty.is_err(), "{empty:?}");

    // A model whose class count does not match the names, and a missing model, are refused.
    let wrong = Classifier::open(&model, labels[..10].to_vec(), &cpu()).unwrap_err();
    assert!(wrong.contains("1000 class scores"), "{wrong}");
    let missing = VisionWorker::start(
        PathBuf::from("/nonexistent/efficientnet_lite0.onnx"),
        package.file("vision-labels").unwrap(),
        cpu(),
        3,
    )
    .unwrap_err();
    assert!(
        missing.contains("/nonexistent/efficientnet_lite0.onnx"),
        "{missing}"
    );
}

/// 200 ms micro-turns of `audio`, each with one RGB8 frame (timestamp = the window start).
fn av_packets(audio: &[f32], frame: &(Vec<u8>, u32, u32)) -> Vec<gst::Buffer> {
    let turns = audio.len().div_ceil(TURN_SAMPLES);
    let mut chunk = vec![0.0f32; TURN_SAMPLES];
    (0..turns)
        .map(|k| {
            let header = Header {
                turn_index: k as u64,
                start: k as u64 * TURN_NS,
                duration: TURN_NS,
                audio_rate: RATE as u32,
                flags: if k == 0 { packet_flags::DISCONT } else { 0 },
                video_flags: video_flags::PRESENT,
                video_age: 0,
                samples_per_track: TURN_SAMPLES as u32,
            };
            let mut bytes = Vec::new();
            let mut writer = PacketWriter::begin(&mut bytes, &header);
            chunk.fill(0.0);
            let from = (k * TURN_SAMPLES).min(audio.len());
            let to = ((k + 1) * TURN_SAMPLES).min(audio.len());
            chunk[..to - from].copy_from_slice(&audio[from..to]);
            writer.audio_track("audio", 0, 0, &chunk).unwrap();
            writer
                .video_frame(header.start, frame.1, frame.2, 0, &frame.0)
                .unwrap();
            writer.finish();
            let mut buffer = gst::Buffer::from_mut_slice(bytes);
            {
                let buffer = buffer.get_mut().unwrap();
                buffer.set_pts(gst::ClockTime::from_nseconds(header.start));
                buffer.set_duration(gst::ClockTime::from_nseconds(TURN_NS));
            }
            buffer
        })
        .collect()
}

fn latency_ms(run: &Run, field: &str) -> f64 {
    run.step_latency
        .as_ref()
        .and_then(|s| s.get::<u64>(field).ok())
        .expect("step-latency") as f64
        / 1e6
}

#[test]
fn video_micro_turns_put_the_observation_into_the_context_package() {
    let script = Script::default()
        .silence(600)
        .say("What do you see on my desk?")
        .silence(1600)
        .whole_turns();
    let frame = photo();
    let package = source_package();
    let model = package.to_str().unwrap();

    let on = run_element(
        &element(&[("model", model), ("filler-ms", "0"), ("stats", "true")]),
        av_packets(&script.audio, &frame),
    );
    let observations = on.messages(vision::OBSERVATION);
    let times: Vec<u64> = observations
        .iter()
        .map(|m| m.get::<u64>("frame-time").unwrap())
        .collect();
    // A frame every 200 ms, classified at most once a second of running time.
    let turns = script.audio.len().div_ceil(TURN_SAMPLES) as u64;
    let expected: Vec<u64> = (0..turns * TURN_NS).step_by(1_000_000_000).collect();
    assert_eq!(times, expected);
    for m in &observations {
        assert_eq!(m.get::<String>("label").unwrap(), "modem");
        assert!(m.get::<f64>("probability").unwrap() > 0.8);
        assert!(m.get::<String>("labels").unwrap().starts_with("modem 0."));
        // Non-live: the observation is made in the micro-turn of its frame.
        assert_eq!(
            running_time(m),
            m.get::<u64>("frame-time").unwrap() + TURN_NS
        );
    }
    let contexts = on.contexts();
    assert_eq!(contexts.len(), 1, "one user turn, one request");
    let context = &contexts[0];
    let trigger = context.trigger.running_time_ns;
    let seen = &context.observations;
    assert_eq!(seen.len(), 3, "{seen:?}");
    let latest = *times.iter().filter(|&&t| t < trigger).max().unwrap();
    assert!(
        seen.iter()
            .all(|o| o.source == "camera" && o.running_time_ns == latest)
    );
    assert_eq!(seen[0].label, "modem");
    let scores: Vec<f32> = seen.iter().map(|o| o.score.unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().sum::<f32>() <= 1.0);
    // The JSON itself, as the sidecar reads it.
    let json = match &on.reasoning[0] {
        Out::Text { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        json.contains(r#""source":"camera","label":"modem""#),
        "{json}"
    );

    // vision-interval-ms=0: video is ignored, the conversation is the same.
    let off = run_element(
        &element(&[
            ("model", model),
            ("filler-ms", "0"),
            ("vision-interval-ms", "0"),
        ]),
        av_packets(&script.audio, &frame),
    );
    assert!(off.messages(vision::OBSERVATION).is_empty());
    let off_contexts = off.contexts();
    assert_eq!(off_contexts.len(), 1);
    assert!(off_contexts[0].observations.is_empty());
    assert_eq!(off_contexts[0].conversation, context.conversation);
    // Non-live, the step that offers a frame waits for its classification: what that costs.
    let mut with_frame = Vec::new();
    let mut others = Vec::new();
    for stats in on.messages("interaction/turn-stats") {
        let ms = stats.get::<u64>("step-latency").unwrap() as f64 / 1e6;
        let end = running_time(stats);
        if times.contains(&(end - TURN_NS)) {
            with_frame.push(ms);
        } else {
            others.push(ms);
        }
    }
    others.sort_by(f64::total_cmp);
    let inference: Vec<f64> = observations
        .iter()
        .map(|m| m.get::<u64>("inference-time").unwrap() as f64 / 1e6)
        .collect();
    println!(
        "non-live step latency: steps that classify a frame {with_frame:.1?} ms (inference \
         {inference:.1?} ms), other steps p50 {:.1} ms; whole run p50 {:.1} ms with vision, \
         {:.1} ms without",
        others[others.len() / 2],
        latency_ms(&on, "p50"),
        latency_ms(&off, "p50"),
    );
}

#[test]
fn a_package_with_vision_needs_both_files_and_names_a_missing_one() {
    const MANIFEST: &str = include_str!("../../../models/packages/cascade-default/manifest.toml");
    let write = |name: &str, manifest: &str| {
        let dir = scratch_dir("vision-packages").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
        dir
    };
    let error = |dir: &Path| {
        start_error(&element(&[("model", dir.to_str().unwrap())])).expect("the start must fail")
    };
    let missing = write(
        "missing-model",
        &MANIFEST.replace(
            "efficientnet-lite0/efficientnet_lite0.onnx",
            "efficientnet-lite0/not-here.onnx",
        ),
    );
    let text = error(&missing);
    assert!(
        text.contains("not-here.onnx") && text.contains("(vision) is missing"),
        "{text}"
    );
    let half = write(
        "no-labels",
        &MANIFEST.replace("[files.vision-labels]", "[files.unused-labels]"),
    );
    let text = error(&half);
    assert!(text.contains("lacks files.vision-labels"), "{text}");
    // Without both, the package is an audio-only cascade: it starts and says so.
    let audio_only = MANIFEST
        .replace("[files.vision]", "[files.unused-model]")
        .replace("[files.vision-labels]", "[files.unused-labels]");
    let dir = write("audio-only", &audio_only);
    assert_eq!(
        start_error(&element(&[("model", dir.to_str().unwrap())])),
        None
    );
}

#[test]
fn a_one_pixel_frame_is_classified_and_a_malformed_one_cannot_be_written() {
    init();
    // A frame whose size does not match its data cannot be written; one that is valid but
    // degenerate (1 x 1) is classified like any other.
    let mut bytes = Vec::new();
    let header = Header {
        turn_index: 0,
        start: 0,
        duration: TURN_NS,
        audio_rate: RATE as u32,
        flags: packet_flags::DISCONT,
        video_flags: video_flags::PRESENT,
        video_age: 0,
        samples_per_track: TURN_SAMPLES as u32,
    };
    let mut writer = PacketWriter::begin(&mut bytes, &header);
    writer
        .audio_track("audio", 0, 0, &vec![0.0; TURN_SAMPLES])
        .unwrap();
    assert!(writer.video_frame(0, 4, 4, 0, &[0; 5]).is_err());
    writer.video_frame(0, 1, 1, 0, &[90, 90, 90]).unwrap();
    writer.finish();
    let buffer = gst::Buffer::from_mut_slice(bytes);
    let run = run_element(
        &element(&[("model", source_package().to_str().unwrap())]),
        vec![buffer],
    );
    let observations = run.messages(vision::OBSERVATION);
    assert_eq!(observations.len(), 1);
    assert_eq!(observations[0].get::<u64>("frame-time").unwrap(), 0);
}

#[test]
fn live_steps_never_wait_and_take_the_observation_when_it_is_ready() {
    use gstinteraction::conversation::{Conversation, ConversationConfig};
    use gstinteraction::vision::{Vision, VisionConfig};
    use interaction_protocol::packet::VideoFrame;

    let package = gstinteraction::package::load(&source_package()).expect("the default package");
    let worker = VisionWorker::start(
        package.file("vision").unwrap().to_path_buf(),
        package.file("vision-labels").unwrap(),
        cpu(),
        2,
    )
    .unwrap();
    let mut vision = Vision::new(
        VisionConfig {
            interval: 1_000_000_000,
            top_k: 2,
        },
        worker,
    );
    let (data, width, height) = photo();
    let frame = |timestamp: u64| VideoFrame {
        timestamp,
        width,
        height,
        flags: 0,
        data: data.clone(),
    };
    let mut conversation = Conversation::new(ConversationConfig::default());
    let mut out = Vec::new();
    // Turn 0 offers its frame and returns at once (the model is still being opened); later
    // frames are not queued while it runs, and the observation is the first frame's.
    let started = std::time::Instant::now();
    vision
        .step(&[frame(0)], false, TURN_NS, &mut conversation, &mut out)
        .unwrap();
    assert!(out.is_empty() && vision.latest().is_empty());
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    let mut k = 1u64;
    while out.is_empty() {
        assert!(k < 100, "no observation within 20 s of micro-turns");
        std::thread::sleep(std::time::Duration::from_millis(200));
        vision
            .step(
                &[frame(k * TURN_NS)],
                false,
                (k + 1) * TURN_NS,
                &mut conversation,
                &mut out,
            )
            .unwrap();
        k += 1;
    }
    let latest = vision.latest();
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|o| o.running_time_ns == 0));
    assert_eq!(latest[0].label, "modem");
    assert_eq!(conversation.observations(), latest);
    // A flush forgets it; the next frame is due at once.
    vision.reset();
    assert!(vision.latest().is_empty());
    out.clear();
    vision
        .step(
            &[frame(500 * MS)],
            true,
            700 * MS,
            &mut conversation,
            &mut out,
        )
        .unwrap();
    assert_eq!(vision.latest()[0].running_time_ns, 500 * MS);
}
