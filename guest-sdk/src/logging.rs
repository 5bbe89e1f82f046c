//! Log lines to the host (`pipeline.log`); natively they are captured for tests.

use std::fmt;

/// Log level, numbered as in the ABI.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

/// Sends one log line to the host. On native targets the line is appended to a thread-local
/// buffer (read it with `testing::take_logs`) and printed to stderr.
pub fn log(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `msg.len()` bytes at `msg.as_ptr()` in our memory during the call.
    unsafe {
        crate::sys::log(level as i32, msg.as_ptr(), msg.len())
    };
    #[cfg(not(target_arch = "wasm32"))]
    native::push(level, msg);
}

#[doc(hidden)]
pub fn __log_fmt(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => log(level, s),
        None => log(level, &fmt::format(args)),
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use super::Level;
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn push(level: Level, msg: &str) {
        eprintln!("[plugin {level:?}] {msg}");
        LINES.with(|l| l.borrow_mut().push((level, msg.to_owned())));
    }

    pub(crate) fn take() -> Vec<(Level, String)> {
        LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}

/// `error!("fmt", args…)`: log at level error.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__log_fmt($crate::Level::Error, ::core::format_args!($($arg)+)) };
}

/// `warn!("fmt", args…)`: log at level warn.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__log_fmt($crate::Level::Warn, ::core::format_args!($($arg)+)) };
}

/// `info!("fmt", args…)`: log at level info.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__log_fmt($crate::Level::Info, ::core::format_args!($($arg)+)) };
}

/// `debug!("fmt", args…)`: log at level debug.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__log_fmt($crate::Level::Debug, ::core::format_args!($($arg)+)) };
}

/// `trace!("fmt", args…)`: log at level trace.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__log_fmt($crate::Level::Trace, ::core::format_args!($($arg)+)) };
}
