fn main() {
    let audio: Vec<f32> = (0..48_000)
        .map(|i| (i as f32 * 0.031).sin() * 0.3 + ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05)
        .collect();
    let mel = kernels::whisper_log_mel(&audio, 300).unwrap();
    let d = kernels::dmel(&audio).unwrap();
    let mut w = kernels::DmelStream::new(kernels::DmelConfig::default()).unwrap();
    let mut lm = Vec::new();
    w.push_with_logmel(&audio[..7777], &mut |_, l| lm.extend_from_slice(l))
        .unwrap();
    let mut h: u64 = 0xcbf29ce484222325;
    for v in mel.iter().chain(&lm) {
        h = (h ^ v.to_bits() as u64).wrapping_mul(0x100000001b3);
    }
    for v in &d {
        h = (h ^ *v as u64).wrapping_mul(0x100000001b3);
    }
    println!("{h:016x} {} {} {}", mel.len(), d.len(), lm.len());
}
