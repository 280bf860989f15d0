//! A missing, corrupt or wrong model folder is refused at load with a message naming the file.

mod common;

use std::path::Path;

use interaction_asr::{Error, Whisper, default_model_dir};

/// A copy of the model folder (symlinks) in which `replace` gets the given content.
fn model_dir_with(name: &str, replace: &[(&str, Option<&[u8]>)]) -> std::path::PathBuf {
    let source = default_model_dir();
    let dir = common::scratch_dir(name);
    for file in [
        "encoder.onnx",
        "decoder.onnx",
        "vocabulary.txt",
        "config.json",
    ] {
        let target = dir.join(file);
        let _ = std::fs::remove_file(&target);
        match replace.iter().find(|(f, _)| *f == file) {
            Some((_, Some(content))) => std::fs::write(&target, content).expect("write"),
            Some((_, None)) => {}
            None => std::os::unix::fs::symlink(source.join(file), &target).expect("symlink"),
        }
    }
    dir
}

fn load_error(dir: &Path) -> Error {
    Whisper::load(dir).expect_err("loading must fail")
}

#[test]
fn missing_folder_names_the_file_and_the_fix() {
    let error = load_error(Path::new("/nonexistent/whisper-tiny-en"));
    assert!(matches!(error, Error::MissingFile { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("/nonexistent/whisper-tiny-en/encoder.onnx"),
        "{text}"
    );
    assert!(text.contains("setup.sh"), "{text}");
}

#[test]
fn missing_decoder_is_named() {
    let dir = model_dir_with("missing_decoder", &[("decoder.onnx", None)]);
    let text = load_error(&dir).to_string();
    assert!(
        text.contains("decoder.onnx") && text.contains("missing"),
        "{text}"
    );
}

#[test]
fn corrupt_encoder_is_a_model_error() {
    let dir = model_dir_with(
        "corrupt_encoder",
        &[("encoder.onnx", Some(b"not an onnx file"))],
    );
    let error = load_error(&dir);
    assert!(matches!(error, Error::Model { .. }), "{error:?}");
    assert!(error.to_string().contains("encoder.onnx"), "{error}");
}

#[test]
fn another_model_in_place_of_the_encoder_is_refused_by_its_names() {
    let vad = interaction_runtime::model_file("silero-vad/silero_vad.onnx").expect("Silero VAD");
    let content = std::fs::read(vad).expect("read");
    let dir = model_dir_with("wrong_encoder", &[("encoder.onnx", Some(&content))]);
    let text = load_error(&dir).to_string();
    assert!(text.contains("cross_k.0"), "{text}");
}

#[test]
fn truncated_vocabulary_is_refused() {
    let dir = model_dir_with("bad_vocabulary", &[("vocabulary.txt", Some(b"!\n\"\n#\n"))]);
    let error = load_error(&dir);
    assert!(matches!(error, Error::Vocabulary { .. }), "{error:?}");
    assert!(error.to_string().contains("50256"), "{error}");
}

#[test]
fn config_without_suppression_lists_is_refused() {
    let dir = model_dir_with("bad_config", &[("config.json", Some(b"{}"))]);
    let text = load_error(&dir).to_string();
    assert!(text.contains("suppress_ids"), "{text}");
}
