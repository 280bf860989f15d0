//! Real speech for the tests and benches of every crate: espeak-ng speaks, sox converts to
//! 16 kHz mono 16-bit. Both are separate programs (`scripts/setup.sh` installs them), never
//! linked, so their licences stay with them.
//!
//! Every sox conversion runs with `-D` (no dither). sox's default dither adds random noise in
//! the last bit of each conversion, and Smart Turn's verdict on one sentence moved with it
//! (0.72 against 0.44 for the question of the interaction plugin's barge-in test, 400 ms after
//! it ends), so a test passed or failed by the draw of a fresh checkout. Here every run gets the
//! same samples.
//!
//! The functions return a `Result` whose error names the command and says what went wrong;
//! tests unwrap it, the whole-system tests pass it on.

use std::path::Path;
use std::process::{Command, Output};

/// The sample rate everything here converts to.
pub const RATE: u32 = 16_000;

/// Runs `command` to the end and returns its output; an error where it could not start (not
/// installed) or did not succeed (with its standard error).
pub fn run(command: &mut Command) -> Result<Output, String> {
    let output = command.output().map_err(|e| {
        format!("could not run {command:?}: {e} (is it installed? scripts/setup.sh installs it)")
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// espeak-ng speaking `text` into the WAV file `wav`, at espeak-ng's own rate (22 050 Hz).
/// `args` go before `-w`: a voice (`["-v", "en-us"]`), a speed (`["-s", "165"]`).
pub fn espeak(text: &str, args: &[&str], wav: &Path) -> Result<(), String> {
    run(Command::new("espeak-ng")
        .args(args)
        .arg("-w")
        .arg(wav)
        .arg(text))
    .map(drop)
}

/// The sox command that reads `source` (any format sox reads), without dither.
fn sox(source: &Path) -> Command {
    let mut command = Command::new("sox");
    command.arg("-D").arg(source);
    command
}

/// `source` converted to a 16 kHz mono 16-bit WAV at `dest`, then sox's `effects` applied
/// (`["pad", "1", "0.5"]`: silence before and after, in seconds; `["trim", "0", "5"]`).
pub fn to_16k(source: &Path, dest: &Path, effects: &[&str]) -> Result<(), String> {
    let rate = RATE.to_string();
    run(sox(source)
        .args(["-r", &rate, "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(dest)
        .args(effects))
    .map(drop)
}

/// The samples of `source` (any format sox reads) as 16 kHz mono `f32`, after sox's `effects`:
/// 16-bit samples divided by 32768, so a 16-bit WAV gives exactly the values numpy reads from it.
pub fn read_16k(source: &Path, effects: &[&str]) -> Result<Vec<f32>, String> {
    let rate = RATE.to_string();
    let output = run(sox(source)
        .args([
            "-t",
            "raw",
            "-r",
            &rate,
            "-c",
            "1",
            "-e",
            "signed-integer",
            "-b",
            "16",
        ])
        .args(["-L", "-"])
        .args(effects))?;
    Ok(s16le_to_f32(&output.stdout))
}

/// Little-endian signed 16-bit samples as `f32` in [-1, 1) (a trailing odd byte is dropped).
pub fn s16le_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_scaled_16_bit_values() {
        let bytes = [0x00, 0x80, 0xff, 0xff, 0x00, 0x00, 0xff, 0x7f, 0x01];
        assert_eq!(
            s16le_to_f32(&bytes),
            [-1.0, -1.0 / 32768.0, 0.0, 32767.0 / 32768.0]
        );
    }
}
