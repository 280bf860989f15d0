//! Run-time support shared by the gst-interaction plugins.
//!
//! Two things every element that runs a model needs, found the same way everywhere:
//!
//! - **the model cache** ([`cache_root`], [`model_file`]): where `scripts/fetch-models.py`
//!   stored the verified models. `GST_INTERACTION_CACHE` overrides it; otherwise it is
//!   `$XDG_CACHE_HOME/gst-interaction` (or `~/.cache/gst-interaction`).
//! - **the ONNX Runtime environment** ([`ort_environment`]): one per process, created on first
//!   use from the library named by `ORT_DYLIB_PATH`, or else the one in the model cache. Every
//!   failure is an [`Error`] with a message a user can act on; nothing here panics (plain
//!   `ort::init()` panics when the library is missing, so it is never called).

pub mod pipeline_file;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// File name of the ONNX Runtime library that the set-up fetches (from the `onnxruntime`
/// 1.31.1 wheel); `ort`'s `api-31` feature needs this version or newer.
pub const ORT_LIBRARY_FILE: &str = "onnxruntime/libonnxruntime.so.1.31.1";

/// Errors a user can act on: each message says what is wrong and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(
        "model file {path} is missing; run `make test` or `scripts/setup.sh` to fetch the models, \
         or set GST_INTERACTION_CACHE to a folder that holds them"
    )]
    MissingModel { path: PathBuf },
    #[error(
        "could not load the ONNX Runtime library {path}: {reason}. Run `scripts/setup.sh` to \
         fetch it, or set ORT_DYLIB_PATH to an ONNX Runtime >= 1.31 library \
         (libonnxruntime.so.1.31.1 from the onnxruntime wheel)"
    )]
    OrtLibrary { path: PathBuf, reason: String },
    #[error("could not create the ONNX Runtime environment: {0}")]
    OrtEnvironment(String),
}

/// The cache root: `GST_INTERACTION_CACHE`, else `$XDG_CACHE_HOME/gst-interaction`, else
/// `$HOME/.cache/gst-interaction`. The same rule as `scripts/fetch-models.py`.
pub fn cache_root() -> PathBuf {
    if let Some(explicit) = non_empty_env("GST_INTERACTION_CACHE") {
        return PathBuf::from(explicit);
    }
    let xdg = non_empty_env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home_dir().join(".cache"));
    xdg.join("gst-interaction")
}

/// The folder that holds the fetched models (`<cache>/models`).
pub fn models_dir() -> PathBuf {
    cache_root().join("models")
}

/// A fetched model file by its `dest` in `models/manifest.toml`, checked to exist.
pub fn model_file(dest: impl AsRef<Path>) -> Result<PathBuf, Error> {
    let path = models_dir().join(dest);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingModel { path })
    }
}

/// The ONNX Runtime library this process loads: `ORT_DYLIB_PATH`, else the cached one.
pub fn ort_library_path() -> PathBuf {
    non_empty_env("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| models_dir().join(ORT_LIBRARY_FILE))
}

/// The process-wide ONNX Runtime environment, created on first use.
///
/// ONNX Runtime allows one environment per process and `ort` loads one library per process,
/// so the first outcome, success or failure, is kept and returned to every later caller.
pub fn ort_environment() -> Result<&'static ort::environment::Environment, Error> {
    static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, Error>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| create_environment(&ort_library_path()))
        .as_ref()
        .map_err(Clone::clone)
}

fn create_environment(library: &Path) -> Result<ort::environment::Environment, Error> {
    if !library.is_file() {
        return Err(Error::OrtLibrary {
            path: library.to_owned(),
            reason: "no such file".into(),
        });
    }
    // `ort::init_from` dlopens the library and returns an error instead of panicking. The
    // Debug form of the error carries the dlopen reason; the Display form is terse.
    let builder = ort::init_from(library).map_err(|error| Error::OrtLibrary {
        path: library.to_owned(),
        reason: format!("{error:?}"),
    })?;
    builder
        .with_name("gst-interaction")
        .build()
        .map_err(|error| Error::OrtEnvironment(error.to_string()))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn home_dir() -> PathBuf {
    non_empty_env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_an_error_that_names_the_path() {
        let Err(error) = create_environment(Path::new("/nonexistent/libonnxruntime.so.1.31.1"))
        else {
            panic!("a missing library must be an error");
        };
        let text = error.to_string();
        assert!(
            text.contains("/nonexistent/libonnxruntime.so.1.31.1"),
            "{text}"
        );
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
    }

    #[test]
    fn missing_model_names_the_file_and_the_fix() {
        let error = model_file("no-such-model/model.onnx").expect_err("must be missing");
        let text = error.to_string();
        assert!(text.contains("no-such-model/model.onnx"), "{text}");
        assert!(text.contains("make test"), "{text}");
    }
}
