//! What each plugin `Store` carries (`HostState`): the limiter that counts memory and table
//! elements against one limit, and the two host functions a plugin may import, `pipeline.log`
//! (which charges fuel) and `pipeline.panic`.

use wasmtime::{Caller, Linker, ResourceLimiter};

use super::PluginLog;
use super::validate::{MAX_TABLE_ELEMENTS, TABLE_ELEMENT_BYTES};

/// Per-call log lines kept; the rest are counted as dropped (rate limit).
const MAX_LOG_LINES_PER_CALL: usize = 64;
const MAX_LOG_LINE_BYTES: usize = super::abi::GUEST_TEXT_MAX;
/// Fuel one `pipeline.log` call costs, plus `LOG_FUEL_PER_BYTE` per byte: a plugin that floods the
/// log runs out of fuel like one that loops, instead of spending its whole wall-clock allowance
/// in host code.
const LOG_FUEL_BASE: u64 = 10_000;
const LOG_FUEL_PER_BYTE: u64 = 16;
/// Epoch ticks a call runs at normal priority before its thread is demoted (see `priority`).
pub(super) const DEMOTE_AFTER_TICKS: u64 = 2;

/// State each `Store` carries: limits and what the guest reported through its imports.
pub struct HostState {
    /// Bytes the linear memory and the tables together may hold.
    pub(super) memory_limit: usize,
    pub(super) memory_limit_hit: bool,
    pub(super) memory_bytes: usize,
    pub(super) table_bytes: usize,
    /// `pipeline.log` found too little fuel for its cost.
    pub(super) log_out_of_fuel: bool,
    /// Epoch ticks the call may still run once its thread has been demoted.
    pub(super) ticks_after_demotion: u64,
    /// This call ran long enough to be demoted.
    pub(super) demoted: bool,
    pub(super) logs: Vec<PluginLog>,
    pub(super) logs_dropped: u32,
    pub(super) panic_message: Option<String>,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let memory_bytes = self.memory_bytes + desired.saturating_sub(current);
        self.admit(memory_bytes, self.table_bytes)?;
        self.memory_bytes = memory_bytes;
        Ok(true)
    }

    /// Tables are memory too: their elements count against the same limit, so a module cannot
    /// hold large tables outside the memory cap.
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > MAX_TABLE_ELEMENTS {
            self.memory_limit_hit = true;
            return Err(wasmtime::Error::msg("table element limit reached"));
        }
        let added = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES as usize);
        let table_bytes = self.table_bytes.saturating_add(added);
        self.admit(self.memory_bytes, table_bytes)?;
        self.table_bytes = table_bytes;
        Ok(true)
    }
}

impl HostState {
    pub(super) fn new(memory_limit: usize) -> HostState {
        HostState {
            memory_limit,
            memory_limit_hit: false,
            memory_bytes: 0,
            table_bytes: 0,
            log_out_of_fuel: false,
            ticks_after_demotion: 0,
            demoted: false,
            logs: Vec::new(),
            logs_dropped: 0,
            panic_message: None,
        }
    }

    fn admit(&mut self, memory_bytes: usize, table_bytes: usize) -> wasmtime::Result<()> {
        if memory_bytes.saturating_add(table_bytes) > self.memory_limit {
            self.memory_limit_hit = true;
            // An error (not `false`) makes the growth trap, so a guest cannot limp on without memory.
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(())
    }
}

/// Registers the two host functions a plugin may import.
pub fn define_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "pipeline",
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            charge_log_fuel(&mut caller, len)?;
            let state = caller.data_mut();
            if state.logs.len() >= MAX_LOG_LINES_PER_CALL {
                state.logs_dropped += 1;
                return Ok(());
            }
            let message = read_guest_string(&mut caller, ptr, len);
            caller.data_mut().logs.push(PluginLog {
                level: level.clamp(0, 4) as u8,
                message,
            });
            Ok(())
        },
    )?;
    linker.func_wrap(
        "pipeline",
        "panic",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let message = read_guest_string(&mut caller, ptr, len);
            caller.data_mut().panic_message = Some(message);
            Err(wasmtime::Error::msg("plugin panicked"))
        },
    )?;
    Ok(())
}

/// Takes the fuel a `pipeline.log` call costs; out of fuel ends the call like a fuel trap would.
/// Without metering (benchmarks only) there is no fuel to take.
fn charge_log_fuel(caller: &mut Caller<'_, HostState>, len: i32) -> wasmtime::Result<()> {
    let Ok(fuel) = caller.get_fuel() else {
        return Ok(());
    };
    let bytes = (len.max(0) as u64).min(MAX_LOG_LINE_BYTES as u64);
    let cost = LOG_FUEL_BASE + bytes * LOG_FUEL_PER_BYTE;
    if fuel < cost {
        caller.data_mut().log_out_of_fuel = true;
        return Err(wasmtime::Error::msg("out of fuel in pipeline.log"));
    }
    caller.set_fuel(fuel - cost)
}

fn read_guest_string(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> String {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return String::from("<no memory>");
    };
    let len = (len.max(0) as usize).min(MAX_LOG_LINE_BYTES);
    let start = ptr.max(0) as usize;
    let data = memory.data(&caller);
    match data.get(start..start.saturating_add(len)) {
        Some(bytes) => super::abi::guest_text(bytes),
        None => String::from("<log pointer outside memory>"),
    }
}
