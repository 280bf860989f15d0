//! Checks the installation end to end: the ONNX Runtime library and a model from the cache
//! load through `ort`, and the model gives the right answer on real speech.
//!
//! Speech comes from espeak-ng (a separate program), resampled to 16 kHz by sox (both through
//! the workspace's `test-audio`).

use interaction_runtime::{model_file, ort_environment};
use ort::session::Session;
use ort::value::Tensor;

const RATE: usize = 16_000;
const FRAME: usize = 512;
const CONTEXT: usize = 64;

/// `seconds` of silence, then espeak-ng saying `text`, then `seconds` of silence, 16 kHz mono.
fn speech_between_silences(text: &str, seconds: f32) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("runtime-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wav = dir.join("speech.wav");
    test_audio::espeak(text, &["-v", "en-us"], &wav).unwrap();
    let pad = seconds.to_string();
    let samples = test_audio::read_16k(&wav, &["pad", &pad, &pad]).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    samples
}

#[test]
fn silero_from_the_cache_finds_espeak_speech() {
    let env = ort_environment().expect("ONNX Runtime from the cache");
    let model = model_file("silero-vad/silero_vad.onnx").expect("silero in the cache");
    let mut session = Session::builder(env)
        .expect("session builder")
        .with_intra_threads(1)
        .map_err(ort::Error::from)
        .and_then(|mut builder| builder.commit_from_file(model))
        .expect("silero session");

    let silence_s = 1.0;
    let audio = speech_between_silences("The quick brown fox jumps over the lazy dog.", silence_s);
    let mut state = Tensor::<f32>::from_array(([2usize, 1, 128], vec![0.0f32; 256])).unwrap();
    let sample_rate = Tensor::<i64>::from_array(((), vec![RATE as i64])).unwrap();
    let mut context = vec![0.0f32; CONTEXT];
    let mut probabilities = Vec::new();
    for frame in audio.chunks_exact(FRAME) {
        let mut input = context.clone();
        input.extend_from_slice(frame);
        context.copy_from_slice(&frame[FRAME - CONTEXT..]);
        let input = Tensor::<f32>::from_array(([1usize, CONTEXT + FRAME], input)).unwrap();
        let mut outputs = session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sample_rate.clone()])
            .expect("silero step");
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().unwrap();
        probabilities.push(p[0]);
        state = outputs
            .remove("stateN")
            .unwrap()
            .downcast::<ort::value::TensorValueType<f32>>()
            .unwrap();
    }

    let frames_per_second = RATE as f32 / FRAME as f32;
    let lead = (silence_s * frames_per_second) as usize - 2;
    let leading_max = probabilities[..lead].iter().cloned().fold(0.0, f32::max);
    let speech = &probabilities[lead + 4..probabilities.len() - lead - 4];
    let speech_mean = speech.iter().sum::<f32>() / speech.len() as f32;
    assert!(leading_max < 0.1, "silence scored {leading_max}");
    assert!(
        speech_mean > 0.5,
        "speech scored only {speech_mean} on average"
    );
}
