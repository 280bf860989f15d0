//! The plugin-wide async runtime: every element instance runs its requests here.
//!
//! A small multi-thread tokio runtime: one worker thread drives the HTTP streams and the
//! request tasks; local generation runs on its blocking pool (one thread per running request,
//! bounded by each element's `max-concurrent`). Created on first use; a failure to create it is
//! kept and reported to every caller instead of panicking.

use std::sync::OnceLock;

/// The runtime, created on first use.
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(16)
                .thread_name("reasoning-runtime")
                .enable_all()
                .build()
                .map_err(|err| format!("cannot start the reasoning runtime: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}
