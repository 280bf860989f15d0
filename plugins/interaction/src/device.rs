//! The `device` property: which ONNX Runtime execution provider runs the models.
//!
//! `cpu` runs on the CPU provider. `cuda` and `cuda:N` ask for the CUDA provider (the
//! `onnxruntime-gpu` library, device N) and register it with `error_on_failure`, so a missing
//! GPU, driver or CUDA library is an error instead of a silent CPU fallback. With
//! `device-fallback=true` that error becomes a warning and the CPU provider runs; the element
//! logs and posts (`interaction/execution-provider`) which provider actually runs.

use std::path::Path;

use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

/// A parsed `device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
}

impl Device {
    /// Parses `cpu`, `cuda` or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .map(Device::Cuda)
                .ok_or_else(|| {
                    format!("device \"{text}\" is not valid: use cpu, cuda or cuda:N (N >= 0)")
                }),
        }
    }
}

/// What runs after [`choose`]: the provider name and, after a fallback, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: &'static str,
    pub device: Device,
    /// Set when CUDA was asked for and the CPU runs instead.
    pub fallback_reason: Option<String>,
}

impl Provider {
    pub fn describe(&self) -> String {
        match &self.fallback_reason {
            Some(reason) => format!("{} (CUDA fell back to CPU: {reason})", self.name),
            None => self.name.to_owned(),
        }
    }
}

pub const CPU_PROVIDER: &str = "CPUExecutionProvider";
pub const CUDA_PROVIDER: &str = "CUDAExecutionProvider";

/// Decides the provider once, at start: CUDA is tried on a builder (registration fails when the
/// library has no CUDA provider or the provider cannot load its libraries).
pub fn choose(device: Device, allow_fallback: bool) -> Result<Provider, String> {
    let Device::Cuda(id) = device else {
        return Ok(Provider {
            name: CPU_PROVIDER,
            device,
            fallback_reason: None,
        });
    };
    let environment = interaction_runtime::ort_environment().map_err(|e| e.to_string())?;
    let attempt = (|| -> Result<(), String> {
        let available = ort::ep::CUDA::is_available().map_err(|e| e.to_string())?;
        if !available {
            return Err(
                "the ONNX Runtime library has no CUDA execution provider (it is a CPU \
                        build; set ORT_DYLIB_PATH to the onnxruntime-gpu library)"
                    .into(),
            );
        }
        let mut builder = Session::builder(environment).map_err(|e| e.to_string())?;
        ort::ep::CUDA::default()
            .with_device_id(id)
            .register(&mut builder)
            .map_err(|e| e.to_string())
    })();
    match attempt {
        Ok(()) => Ok(Provider {
            name: CUDA_PROVIDER,
            device,
            fallback_reason: None,
        }),
        Err(reason) if allow_fallback => Ok(Provider {
            name: CPU_PROVIDER,
            device: Device::Cpu,
            fallback_reason: Some(reason),
        }),
        Err(reason) => Err(format!(
            "device=cuda:{id} was asked for but CUDA cannot run: {reason}. Use device=cpu, or \
             set device-fallback=true to run on the CPU"
        )),
    }
}

/// Opens `path` on `provider` with `threads` intra-op threads (0: ONNX Runtime's choice).
pub fn open_session(path: &Path, provider: &Provider, threads: usize) -> Result<Session, String> {
    let environment = interaction_runtime::ort_environment().map_err(|e| e.to_string())?;
    let error = |e: ort::Error| format!("cannot load model {}: {e}", path.display());
    let mut builder = Session::builder(environment)
        .map_err(error)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| error(e.into()))?
        .with_intra_threads(threads)
        .map_err(|e| error(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| error(e.into()))?;
    if let Device::Cuda(id) = provider.device {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(id)
                .build()
                .error_on_failure()])
            .map_err(|e| error(e.into()))?;
    }
    builder.commit_from_file(path).map_err(error)
}

/// Checks that a session has the named inputs and outputs; the error names the first missing.
pub fn require_io(
    session: &Session,
    path: &Path,
    inputs: &[&str],
    outputs: &[&str],
) -> Result<(), String> {
    for name in inputs {
        if !session.inputs().iter().any(|i| i.name() == *name) {
            return Err(format!(
                "model {} has no input `{name}` (it has: {})",
                path.display(),
                session
                    .inputs()
                    .iter()
                    .map(|i| i.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for name in outputs {
        if !session.outputs().iter().any(|o| o.name() == *name) {
            return Err(format!(
                "model {} has no output `{name}` (it has: {})",
                path.display(),
                session
                    .outputs()
                    .iter()
                    .map(|o| o.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(Device::parse("cpu"), Ok(Device::Cpu));
        assert_eq!(Device::parse("cuda"), Ok(Device::Cuda(0)));
        assert_eq!(Device::parse("cuda:2"), Ok(Device::Cuda(2)));
        assert!(Device::parse("cuda:-1").unwrap_err().contains("cuda:N"));
        assert!(Device::parse("gpu").unwrap_err().contains("\"gpu\""));
    }
}
