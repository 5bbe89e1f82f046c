//! Runtime behind `export_plugin!`. Hidden: the macro is the interface.

use crate::batch::{Batch, BatchError, Log};
use crate::decision::{Decision, encode_decision, encode_error, encode_keep_json};
use core::fmt::Display;
use serde::de::DeserializeOwned;

/// Parses a subscription config: empty input or JSON `null` gives `C::default()`.
pub fn parse_config<C: DeserializeOwned + Default>(json: &[u8]) -> Result<C, String> {
    let json = json.trim_ascii();
    if json.is_empty() || json == b"null" {
        return Ok(C::default());
    }
    serde_json::from_slice(json).map_err(|e| format!("invalid config: {e}"))
}

/// Index in the batch of the event being processed (`u32::MAX`: none), for the panic report.
static CURRENT_EVENT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(u32::MAX);

/// The batch index of the event `process` is running on, if any.
pub fn current_event() -> Option<u32> {
    let index = CURRENT_EVENT.load(core::sync::atomic::Ordering::Relaxed);
    (index != u32::MAX).then_some(index)
}

/// Decodes `input` as a batch, runs `f` on each event and writes the output encoding into `out`
/// (cleared first). At the first `Err` the remaining events (and the failing one) are written as
/// drop and the error record names the failing event; the host fails the whole batch anyway.
pub fn process_batch<C, E, F>(
    config: &C,
    input: &[u8],
    f: F,
    out: &mut Vec<u8>,
) -> Result<(), BatchError>
where
    E: Display,
    F: Fn(&C, &Log<'_>) -> Result<Decision, E>,
{
    let batch = Batch::parse(input)?;
    out.clear();
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    let mut error: Option<(u32, String)> = None;
    for (i, log) in batch.iter().enumerate() {
        if error.is_some() {
            out.push(0);
            continue;
        }
        CURRENT_EVENT.store(i as u32, core::sync::atomic::Ordering::Relaxed);
        let result = f(config, &log);
        CURRENT_EVENT.store(u32::MAX, core::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(Decision::KeepJson(p)) => encode_keep_json(out, &p),
            // Here, not through the general arm: in wasm that cost ~100 instructions a drop.
            Ok(Decision::Drop) => out.push(0),
            Ok(d) => encode_decision(out, &d),
            Err(e) => {
                out.push(0);
                error = Some((i as u32, e.to_string()));
            }
        }
    }
    encode_error(out, error.as_ref().map(|(i, m)| (*i, m.as_str())));
    Ok(())
}

/// Compile-time check used by `export_plugin!` on native targets.
pub fn check_plugin<C, E, F>(_f: F)
where
    C: DeserializeOwned + Default + 'static,
    E: Display,
    F: Fn(&C, &Log<'_>) -> Result<Decision, E>,
{
}

#[cfg(target_arch = "wasm32")]
pub use wasm::*;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::logging::{Level, log};
    use std::any::Any;
    use std::cell::RefCell;

    /// `pipeline_process` return code: the batch is malformed (reason logged at level error).
    pub const ERR_MALFORMED_BATCH: i64 = -1;
    /// `pipeline_process` return code: `in_len` is negative or larger than the input buffer.
    pub const ERR_BAD_LENGTH: i64 = -2;

    thread_local! {
        static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        static CONFIG: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// Reports panics through `pipeline.panic` as "{message} at {file}:{line}:{col} (event {i} of the
    /// batch)"; the panic
    /// then aborts (an `unreachable` trap) if the host has not trapped already.
    pub fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let p = info.payload();
                let msg = if let Some(s) = p.downcast_ref::<&str>() {
                    s
                } else if let Some(s) = p.downcast_ref::<String>() {
                    s.as_str()
                } else {
                    "panic"
                };
                let mut line = match info.location() {
                    Some(l) => format!("{msg} at {}:{}:{}", l.file(), l.line(), l.column()),
                    None => msg.to_owned(),
                };
                if let Some(index) = super::current_event() {
                    line.push_str(&format!(" (event {index} of the batch)"));
                }
                // SAFETY: the host reads `line.len()` bytes at `line.as_ptr()` during the call.
                unsafe { crate::sys::panic(line.as_ptr(), line.len()) };
            }))
        });
    }

    fn with_input<R>(len: i32, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        INPUT.with(|b| {
            let b = b.borrow();
            let len = usize::try_from(len).ok().filter(|&l| l <= b.len())?;
            Some(f(&b[..len]))
        })
    }

    /// `pipeline_input(cap)`: grows the reusable input buffer to at least `cap` bytes.
    pub fn input(cap: i32) -> i32 {
        install_panic_hook();
        let cap = cap.max(0) as usize;
        INPUT.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < cap {
                b.resize(cap, 0);
            }
            b.as_mut_ptr() as usize as i32
        })
    }

    /// `pipeline_init(cfg_len)`: parses and stores the config; nonzero (after an error log) when
    /// it is rejected.
    pub fn init<C: DeserializeOwned + Default + 'static>(cfg_len: i32) -> i32 {
        install_panic_hook();
        let parsed = with_input(cfg_len, parse_config::<C>);
        match parsed {
            Some(Ok(c)) => {
                CONFIG.with(|s| *s.borrow_mut() = Some(Box::new(c)));
                0
            }
            Some(Err(msg)) => {
                log(Level::Error, &msg);
                1
            }
            None => {
                log(
                    Level::Error,
                    "pipeline_init: cfg_len exceeds the input buffer",
                );
                2
            }
        }
    }

    /// `pipeline_process(in_len)`: runs the plugin over the batch and returns
    /// `(out_ptr << 32) | out_len`, or a negative error code.
    pub fn process<C, E, F>(in_len: i32, f: F) -> i64
    where
        C: DeserializeOwned + Default + 'static,
        E: Display,
        F: Fn(&C, &Log<'_>) -> Result<Decision, E>,
    {
        install_panic_hook();
        CONFIG.with(|slot| {
            if slot.borrow().is_none() {
                *slot.borrow_mut() = Some(Box::new(C::default()));
            }
            let slot = slot.borrow();
            let config = slot
                .as_ref()
                .and_then(|c| c.downcast_ref::<C>())
                .expect("config has the plugin's type");
            OUTPUT.with(|out| {
                let mut out = out.borrow_mut();
                match with_input(in_len, |input| process_batch(config, input, f, &mut out)) {
                    Some(Ok(())) => {
                        ((out.as_ptr() as usize as u64) << 32 | out.len() as u64) as i64
                    }
                    Some(Err(e)) => {
                        log(Level::Error, &e.to_string());
                        ERR_MALFORMED_BATCH
                    }
                    None => {
                        log(
                            Level::Error,
                            "pipeline_process: in_len exceeds the input buffer",
                        );
                        ERR_BAD_LENGTH
                    }
                }
            })
        })
    }
}
