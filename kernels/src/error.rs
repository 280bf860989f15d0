//! The one error type of the crate.

use thiserror::Error;

/// Everything a kernel can refuse. Kernels never panic on user input: they return one of these
/// and leave their state as it was before the call.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KernelError {
    /// A sample is NaN or infinite. The whole chunk is rejected and the kernel state is unchanged.
    #[error("sample {index} is not finite ({value}); the chunk was rejected")]
    NonFinite {
        /// Position of the first bad sample in the chunk.
        index: usize,
        /// The bad value.
        value: f32,
    },
    /// A sample's magnitude is beyond [`MAX_SAMPLE_MAGNITUDE`] (audio is nominally in
    /// [-1, 1]). The whole chunk is rejected and the kernel state is unchanged.
    #[error(
        "sample {index} = {value} is out of range (|x| > {MAX_SAMPLE_MAGNITUDE:e}); the chunk was rejected"
    )]
    OutOfRange {
        /// Position of the first bad sample in the chunk.
        index: usize,
        /// The bad value.
        value: f32,
    },
    /// The kernel only runs at the listed sample rates.
    #[error("sample rate {got} Hz is not supported (expected {expected})")]
    SampleRate {
        /// The rate that was asked for.
        got: u32,
        /// The rates the kernel supports, in words.
        expected: &'static str,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An output buffer or an image does not have the size the kernel needs.
    #[error("size mismatch for {what}: expected {expected}, got {got}")]
    Size {
        /// Which buffer.
        what: &'static str,
        /// The size needed.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// An image side is not a multiple of the patch size (no implicit padding is done).
    #[error("{side} {got} px is not a multiple of the patch size {patch} px")]
    NotMultiple {
        /// "width" or "height".
        side: &'static str,
        /// The side length given.
        got: usize,
        /// The patch size.
        patch: usize,
    },
}

/// Largest sample magnitude the audio kernels accept. Audio is nominally in [-1, 1]; beyond
/// about 1e17 an f32 power spectrum overflows, so anything this far out of range is refused
/// rather than turned into garbage.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1.0e9;

/// Rejects a chunk that holds a NaN, an infinity or a sample beyond [`MAX_SAMPLE_MAGNITUDE`].
pub(crate) fn check_finite(chunk: &[f32]) -> Result<(), KernelError> {
    // One branch-free pass in the common case; `<=` is false for NaN.
    if chunk
        .iter()
        .fold(true, |ok, v| ok & (v.abs() <= MAX_SAMPLE_MAGNITUDE))
    {
        return Ok(());
    }
    for (index, &value) in chunk.iter().enumerate() {
        if !value.is_finite() {
            return Err(KernelError::NonFinite { index, value });
        }
        if value.abs() > MAX_SAMPLE_MAGNITUDE {
            return Err(KernelError::OutOfRange { index, value });
        }
    }
    Ok(())
}
