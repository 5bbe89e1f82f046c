//! Pipeline guest SDK: write a plugin as a plain Rust function and export it with
//! [`export_plugin!`]. Implements the guest side of plugin ABI v1 (`ABI.md`).
//!
//! ```
//! use pipeline_sdk::{Decision, Log};
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default)]
//! pub struct Config { min_block: u64 }
//!
//! pub fn process(cfg: &Config, log: &Log) -> Result<Decision, String> {
//!     Ok(if log.block_number() >= cfg.min_block { Decision::Keep } else { Decision::Drop })
//! }
//!
//! pipeline_sdk::export_plugin!(Config, process);
//! ```
//!
//! On `wasm32` the macro emits the exports `pipeline_abi_v1`, `pipeline_input`, `pipeline_init`
//! and `pipeline_process`; the SDK imports only `pipeline.log` and `pipeline.panic`. On other
//! targets it only type-checks the function, which stays unit-testable (see [`testing`]).
//!
//! `pipeline_process` returns a negative code when the input itself is bad (the reason is logged
//! at level error first): `-1` malformed batch, `-2` `in_len` outside the input buffer.
//!
//! A payload is either a `serde_json::Value` ([`Decision::KeepWith`]) or, faster, JSON written
//! straight into a reused buffer by a [`JsonObject`] ([`Decision::KeepJson`], see [`payload`]).

mod batch;
mod decision;
mod encode;
mod logging;
pub mod payload;
#[doc(hidden)]
pub mod rt;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use batch::{Batch, BatchError, Log, LogIter};
pub use decision::{
    Decision, Error, Output, decode_output, encode_decision, encode_error, encode_output,
};
pub use encode::{OwnedLog, encode_batch, encode_log};
#[doc(hidden)]
pub use logging::__log_fmt;
pub use logging::{Level, log};
pub use payload::{JsonArray, JsonObject, JsonPayload};
pub use rt::{parse_config, process_batch};

pub use alloy_primitives::{self, Address, B256, I256, U256};
pub use alloy_sol_types::{self, SolEvent};
pub use serde_json::{self, json};

#[doc(hidden)]
pub use rt as __rt;

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "pipeline")]
    unsafe extern "C" {
        #[link_name = "log"]
        pub fn log(level: i32, ptr: *const u8, len: usize);
        #[link_name = "panic"]
        pub fn panic(ptr: *const u8, len: usize);
    }
}

/// Exports `process: fn(&Config, &Log) -> Result<Decision, E: Display>` as the plugin, with
/// `Config: serde::de::DeserializeOwned + Default + 'static` parsed from the subscription's JSON
/// config by `pipeline_init` (`null` = `Config::default()`, also used if init never ran).
/// Use once per crate. On non-wasm targets this only checks the signature.
#[macro_export]
macro_rules! export_plugin {
    ($config:ty, $process:expr $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub extern "C" fn pipeline_abi_v1() {}

            #[unsafe(no_mangle)]
            pub extern "C" fn pipeline_input(cap: i32) -> i32 {
                $crate::__rt::input(cap)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn pipeline_init(cfg_len: i32) -> i32 {
                $crate::__rt::init::<$config>(cfg_len)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn pipeline_process(in_len: i32) -> i64 {
                $crate::__rt::process::<$config, _, _>(in_len, $process)
            }
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            #[allow(dead_code)]
            fn check() {
                $crate::__rt::check_plugin::<$config, _, _>($process);
            }
        };
    };
}

#[cfg(test)]
mod tests;

/// The examples of `README.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
