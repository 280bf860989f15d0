//! Starting the element: the default package, refused packages, devices, properties.
//! A failing start is checked on a plain pipeline (gst_check::Harness aborts on one).

mod common;

use std::path::PathBuf;

use common::*;
use gst::prelude::*;

const DEFAULT_MANIFEST: &str =
    include_str!("../../../models/packages/cascade-default/manifest.toml");

/// A package directory holding `manifest` (and `files`: name → bytes).
fn package(name: &str, manifest: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = scratch_dir("packages").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
    for (file, bytes) in files {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

fn error_with_package(dir: &std::path::Path) -> String {
    start_error(&element(&[("model", dir.to_str().unwrap())])).expect("the start must fail")
}

fn sha256(bytes: &[u8]) -> String {
    let dir = scratch_dir("hash");
    let path = dir.join("blob");
    std::fs::write(&path, bytes).unwrap();
    gstinteraction::package::sha256_file(&path).unwrap()
}

#[test]
fn the_default_package_starts_without_any_property() {
    let element = element(&[]);
    assert_eq!(start_error(&element), None);
    // After a start (and stop) the provider that ran is readable.
    let pipeline = gst::Pipeline::new();
    pipeline.add(&element).unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    assert_eq!(
        element
            .property::<Option<String>>("execution-provider")
            .as_deref(),
        Some("CPUExecutionProvider")
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let manifest = DEFAULT_MANIFEST.replace(
        "path = \"silero-vad/silero_vad.onnx\"\nroot = \"models\"",
        "path = \"vad-not-here.onnx\"\nroot = \"package\"",
    );
    let error = error_with_package(&package("missing-file", &manifest, &[]));
    assert!(error.contains("vad-not-here.onnx"), "{error}");
    assert!(error.contains("(vad) is missing"), "{error}");
}

#[test]
fn a_corrupt_model_is_a_clear_error() {
    let garbage = b"this is not an ONNX model".as_slice();
    let manifest = DEFAULT_MANIFEST
        .replace(
            "path = \"silero-vad/silero_vad.onnx\"\nroot = \"models\"",
            "path = \"garbage.onnx\"\nroot = \"package\"",
        )
        .replace(
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            &sha256(garbage),
        );
    let error = error_with_package(&package("corrupt", &manifest, &[("garbage.onnx", garbage)]));
    assert!(error.contains("cannot load model"), "{error}");
    assert!(error.contains("garbage.onnx"), "{error}");
}

#[test]
fn a_checksum_mismatch_is_refused() {
    let manifest = DEFAULT_MANIFEST.replace(
        "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        &"0".repeat(64),
    );
    let error = error_with_package(&package("checksum", &manifest, &[]));
    assert!(error.contains("(turn) is corrupt"), "{error}");
    assert!(error.contains(&"0".repeat(64)), "{error}");
}

#[test]
fn a_manifest_lacking_fields_is_refused_naming_them() {
    let cases: [(&str, String, &str); 5] = [
        (
            "no-kind",
            DEFAULT_MANIFEST.replace("kind = \"cascade\"\n", ""),
            "lacks `kind`",
        ),
        (
            "no-turn",
            DEFAULT_MANIFEST.replace("[files.turn]", "[files.unused]"),
            "lacks files.turn (the Smart Turn model)",
        ),
        (
            "no-licences",
            DEFAULT_MANIFEST
                .split("[[licenses]]")
                .next()
                .unwrap()
                .to_owned(),
            "lacks [[licenses]]",
        ),
        (
            "no-yield",
            DEFAULT_MANIFEST.replace(", \"yield\"]", "]"),
            "the action label \"yield\"",
        ),
        (
            "no-checksum",
            DEFAULT_MANIFEST.replace(
                "sha256 = \"1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3\"\n",
                "",
            ),
            "lacks files.vad.sha256",
        ),
    ];
    for (name, manifest, expected) in cases {
        let error = error_with_package(&package(name, &manifest, &[]));
        assert!(error.contains(expected), "{name}: {error}");
    }
    let error = error_with_package(&scratch_dir("packages").join("no-such-package"));
    assert!(error.contains("no manifest.toml"), "{error}");
}

#[test]
fn cuda_without_a_gpu_fails_clearly_unless_fallback_is_allowed() {
    let error = start_error(&element(&[("device", "cuda")])).expect("cuda must fail here");
    assert!(error.contains("CUDA"), "{error}");
    assert!(error.contains("device-fallback=true"), "{error}");

    let error = start_error(&element(&[("device", "tpu")])).expect("unknown device");
    assert!(error.contains("cpu, cuda or cuda:N"), "{error}");

    // With the fallback the element starts on the CPU and says so, in the property and on the bus.
    let element = element(&[("device", "cuda:0"), ("device-fallback", "true")]);
    let pipeline = gst::Pipeline::new();
    pipeline.add(&element).unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline
        .set_state(gst::State::Paused)
        .expect("starts on the CPU");
    let provider = element
        .property::<Option<String>>("execution-provider")
        .unwrap();
    assert!(provider.starts_with("CPUExecutionProvider"), "{provider}");
    assert!(provider.contains("fell back"), "{provider}");
    let message = bus
        .iter_timed(gst::ClockTime::ZERO)
        .find_map(|m| match m.view() {
            gst::MessageView::Element(e) => e
                .structure()
                .filter(|s| s.name() == gstinteraction::interactionmodel::EXECUTION_PROVIDER)
                .map(|s| s.to_owned()),
            _ => None,
        })
        .expect("an execution-provider message");
    assert_eq!(
        message.get::<String>("provider").unwrap(),
        "CPUExecutionProvider"
    );
    assert!(message.get::<String>("fallback-reason").is_ok());
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn properties_round_trip() {
    let element = element(&[]);
    let cases: &[(&str, glib::Value)] = &[
        ("model", Some("/tmp/some-package").to_value()),
        ("device", "cuda:1".to_value()),
        ("device-fallback", true.to_value()),
        ("silence-ms", 700u32.to_value()),
        ("pause-ms", 250u32.to_value()),
        ("turn-threshold", 0.7f64.to_value()),
        ("turn-timeout-ms", 3000u32.to_value()),
        ("vad-threshold", 0.6f64.to_value()),
        ("barge-in-ms", 500u32.to_value()),
        ("backchannel", true.to_value()),
        ("backchannel-text", "uh-huh".to_value()),
        ("backchannel-after-ms", 5000u32.to_value()),
        ("filler-ms", 1500u32.to_value()),
        ("filler-text", "Hmm, let me see.".to_value()),
        ("record-limit", 10u32.to_value()),
        ("speaking-rate", 12.5f64.to_value()),
        ("stats", true.to_value()),
        ("user-label", "caller".to_value()),
    ];
    for (name, value) in cases {
        element.set_property_from_value(name, value);
        let got = element.property_value(name);
        assert_eq!(
            format!("{got:?}"),
            format!("{value:?}"),
            "property {name} round trip"
        );
    }
    element.set_property_from_str("turn-detection", "silence");
    assert_eq!(
        element.property::<gstinteraction::interactionmodel::TurnDetectionMode>("turn-detection"),
        gstinteraction::interactionmodel::TurnDetectionMode::Silence
    );
    // Read-only before any start.
    assert_eq!(
        element.property::<Option<String>>("execution-provider"),
        None
    );
    let latency = element.property::<gst::Structure>("step-latency");
    assert_eq!(latency.get::<u64>("count").unwrap(), 0);
}

use gst::glib;
