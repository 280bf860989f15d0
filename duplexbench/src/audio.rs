//! Audio helpers: WAV in and out, a deterministic resampler.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: {source}")]
    Wav { path: String, source: hound::Error },
    #[error("{0}")]
    Format(String),
}

/// Mono audio as f32 in [-1, 1].
#[derive(Debug, Clone)]
pub struct Mono {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Reads a WAV file (PCM 8/16/24/32-bit or float), averaging channels to mono.
pub fn read_wav(path: &Path) -> Result<Mono, AudioError> {
    let name = path.display().to_string();
    let wav_error = |source| AudioError::Wav {
        path: name.clone(),
        source,
    };
    let reader = hound::WavReader::open(path).map_err(wav_error)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_error)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav_error)?
        }
    };
    let samples = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok(Mono {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// Writes 16-bit mono PCM.
pub fn write_wav_i16(path: &Path, samples: &[i16], sample_rate: u32) -> Result<(), AudioError> {
    let name = path.display().to_string();
    let wav_error = |source| AudioError::Wav {
        path: name.clone(),
        source,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_error)?;
    for &sample in samples {
        writer.write_sample(sample).map_err(wav_error)?;
    }
    writer.finalize().map_err(wav_error)
}

/// Parses 16-bit mono PCM WAV bytes as espeak-ng writes them to stdout: the RIFF and data sizes
/// there are placeholders (0x7ffff...), so the data runs to the end of the bytes.
pub fn parse_streamed_wav(bytes: &[u8]) -> Result<(Vec<i16>, u32), AudioError> {
    let bad = |what: &str| AudioError::Format(format!("espeak-ng output: {what}"));
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE stream"));
    }
    let mut position = 12;
    let mut sample_rate = None;
    while position + 8 <= bytes.len() {
        let id = &bytes[position..position + 4];
        let size = u32::from_le_bytes([
            bytes[position + 4],
            bytes[position + 5],
            bytes[position + 6],
            bytes[position + 7],
        ]) as usize;
        let body = position + 8;
        if id == b"fmt " {
            if body + 16 > bytes.len() {
                return Err(bad("short fmt chunk"));
            }
            let format = u16::from_le_bytes([bytes[body], bytes[body + 1]]);
            let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
            let rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            let bits = u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]);
            if format != 1 || channels != 1 || bits != 16 {
                return Err(bad(&format!(
                    "expected 16-bit mono PCM, got format {format}, {channels} channels, {bits} bits"
                )));
            }
            sample_rate = Some(rate);
            position = body + size;
        } else if id == b"data" {
            let rate = sample_rate.ok_or_else(|| bad("data before fmt"))?;
            let data = &bytes[body..];
            let samples = data
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            return Ok((samples, rate));
        } else {
            position = body + size + (size & 1);
        }
    }
    Err(bad("no data chunk"))
}

/// Resamples with a Blackman-windowed sinc (32 zero crossings each side, cutoff at 0.95 of the
/// lower Nyquist frequency), polyphase: one filter per distinct fractional position, computed
/// once. Plain f64 arithmetic in a fixed order, so the output is bit-identical on every run.
pub fn resample(input: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == to_rate || from_rate == 0 || to_rate == 0 {
        return input.to_vec();
    }
    const HALF_TAPS: f64 = 32.0;
    let ratio = f64::from(to_rate) / f64::from(from_rate);
    // Cutoff relative to the input rate's Nyquist frequency.
    let cutoff = 0.95 * ratio.min(1.0);
    let half_width = HALF_TAPS / cutoff;
    let reach = half_width.ceil() as i64;
    let gcd = {
        let (mut a, mut b) = (from_rate, to_rate);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let phases = (to_rate / gcd) as usize;
    // filters[phase][k + reach] for input offsets k in -reach..=reach.
    let filters: Vec<Vec<f64>> = (0..phases)
        .map(|phase| {
            let fraction = phase as f64 / phases as f64;
            (-reach..=reach)
                .map(|k| {
                    let t = k as f64 - fraction;
                    if t.abs() >= half_width {
                        return 0.0;
                    }
                    let x = std::f64::consts::PI * cutoff * t;
                    let sinc = if x == 0.0 { 1.0 } else { x.sin() / x };
                    let w = std::f64::consts::PI * (t / half_width + 1.0);
                    let blackman = 0.42 - 0.5 * w.cos() + 0.08 * (2.0 * w).cos();
                    cutoff * sinc * blackman
                })
                .collect()
        })
        .collect();
    let output_len = ((input.len() as u64 * u64::from(to_rate)) / u64::from(from_rate)) as usize;
    let mut output = Vec::with_capacity(output_len);
    for n in 0..output_len {
        // Exact rational position n * from / to, split into an integer and a phase.
        let numerator = n as u64 * u64::from(from_rate);
        let centre = (numerator / u64::from(to_rate)) as i64;
        let phase = ((numerator % u64::from(to_rate)) / u64::from(gcd)) as usize;
        let filter = &filters[phase];
        let mut acc = 0.0f64;
        for (tap, k) in (-reach..=reach).enumerate() {
            let index = centre + k;
            if index < 0 || index as usize >= input.len() {
                continue;
            }
            acc += f64::from(input[index as usize]) * filter[tap];
        }
        output.push(acc.round().clamp(-32768.0, 32767.0) as i16);
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampler_keeps_a_tone_and_its_length() {
        let from = 22_050;
        let to = 16_000;
        let tone: Vec<i16> = (0..from)
            .map(|n| {
                (10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / f64::from(from)).sin())
                    as i16
            })
            .collect();
        let out = resample(&tone, from, to);
        assert_eq!(out.len(), 16_000);
        // Away from the edges the output is the same tone sampled at 16 kHz (within 0.5 %).
        for (n, &sample) in out.iter().enumerate().take(15_000).skip(1000) {
            let expected =
                10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / f64::from(to)).sin();
            assert!(
                (f64::from(sample) - expected).abs() < 50.0,
                "sample {n}: {sample} vs {expected}"
            );
        }
    }

    #[test]
    fn resampler_removes_content_above_the_new_nyquist() {
        let from = 22_050;
        let tone: Vec<i16> = (0..from)
            .map(|n| {
                (10_000.0
                    * (2.0 * std::f64::consts::PI * 10_000.0 * n as f64 / f64::from(from)).sin())
                    as i16
            })
            .collect();
        let out = resample(&tone, from, 16_000);
        let peak = out[1000..15_000].iter().map(|s| s.unsigned_abs()).max();
        assert!(peak.unwrap_or(0) < 100, "10 kHz leaked: peak {peak:?}");
    }

    #[test]
    fn streamed_wav_is_parsed_and_bad_input_is_refused() {
        let mut bytes = b"RIFF\xff\xff\xff\x7fWAVEfmt ".to_vec();
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&22_050u32.to_le_bytes());
        bytes.extend_from_slice(&44_100u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(b"data\xff\xff\xff\x7f");
        for v in [1i16, -2, 300] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            parse_streamed_wav(&bytes).unwrap(),
            (vec![1, -2, 300], 22_050)
        );
        assert!(parse_streamed_wav(b"garbage").is_err());
        assert!(parse_streamed_wav(&bytes[..20]).is_err());
    }
}
