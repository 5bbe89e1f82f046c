//! One live plugin instance: its `Store`, limits, host imports and the call protocol of ABI v1.
//! An instance that failed in any way is never called again; the caller drops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Caller, Linker, Memory, ResourceLimiter, Store, Trap, TypedFunc};

use super::abi::{self, Output};
use super::{CompiledPlugin, PluginError, PluginLog};
use crate::config::PluginLimits;
use crate::event::ChainLog;

/// Per-call log lines kept; the rest are counted as dropped (rate limit).
const MAX_LOG_LINES_PER_CALL: usize = 64;
const MAX_LOG_LINE_BYTES: usize = super::abi::GUEST_TEXT_MAX;

/// State each `Store` carries: limits and what the guest reported through its imports.
pub struct HostState {
    memory_limit: usize,
    memory_limit_hit: bool,
    logs: Vec<PluginLog>,
    logs_dropped: u32,
    panic_message: Option<String>,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_limit_hit = true;
            // An error (not `false`) makes the growth trap, so a guest cannot limp on without memory.
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The outcome of one successful call.
#[derive(Debug)]
pub struct CallReport {
    pub output: Output,
    pub fuel_used: u64,
    pub duration: Duration,
    pub logs: Vec<PluginLog>,
    pub logs_dropped: u32,
}

pub struct PluginInstance {
    plugin: Arc<CompiledPlugin>,
    store: Store<HostState>,
    memory: Memory,
    input: TypedFunc<i32, i32>,
    process: TypedFunc<i32, i64>,
    limits: PluginLimits,
    epoch_ticks: u64,
    metered: bool,
    buffer: Vec<u8>,
}

/// Registers the two host functions a plugin may import.
pub fn define_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "pipeline",
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            let message = read_guest_string(&mut caller, ptr, len);
            let state = caller.data_mut();
            if state.logs.len() >= MAX_LOG_LINES_PER_CALL {
                state.logs_dropped += 1;
            } else {
                state.logs.push(PluginLog {
                    level: level.clamp(0, 4) as u8,
                    message,
                });
            }
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

impl PluginInstance {
    /// Instantiates (running any `start` function under limits) and passes the config to
    /// `pipeline_init` when the module exports it.
    pub fn new(
        plugin: Arc<CompiledPlugin>,
        limits: &PluginLimits,
        epoch_ticks: u64,
        metered: bool,
        config_json: &str,
    ) -> Result<PluginInstance, PluginError> {
        let state = HostState {
            memory_limit: limits.memory_bytes,
            memory_limit_hit: false,
            logs: Vec::new(),
            logs_dropped: 0,
            panic_message: None,
        };
        let mut store = Store::new(plugin.instance_pre.module().engine(), state);
        store.limiter(|state| state as &mut dyn ResourceLimiter);
        arm(&mut store, metered.then_some(limits.fuel_base), epoch_ticks)?;
        let instance = plugin
            .instance_pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e))?;
        let missing =
            |name: &'static str| PluginError::Instantiate(format!("export {name} missing"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing("memory"))?;
        let input = instance
            .get_typed_func::<i32, i32>(&mut store, "pipeline_input")
            .map_err(|_| missing("pipeline_input"))?;
        let process = instance
            .get_typed_func::<i32, i64>(&mut store, "pipeline_process")
            .map_err(|_| missing("pipeline_process"))?;
        let init = instance
            .get_typed_func::<i32, i32>(&mut store, "pipeline_init")
            .ok();
        let mut this = PluginInstance {
            plugin,
            store,
            memory,
            input,
            process,
            limits: limits.clone(),
            epoch_ticks,
            metered,
            buffer: Vec::new(),
        };
        if let Some(init) = init {
            this.init(init, config_json)?;
        }
        Ok(this)
    }

    pub fn plugin(&self) -> &Arc<CompiledPlugin> {
        &self.plugin
    }

    fn init(&mut self, init: TypedFunc<i32, i32>, config_json: &str) -> Result<(), PluginError> {
        arm(
            &mut self.store,
            self.metered.then_some(self.limits.fuel_base),
            self.epoch_ticks,
        )?;
        let len = self.write_input(config_json.as_bytes())?;
        let status = init
            .call(&mut self.store, len)
            .map_err(|e| classify(&self.store, e))?;
        if status != 0 {
            let logs = std::mem::take(&mut self.store.data_mut().logs);
            let reason = logs
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PluginError::ConfigRejected(if reason.is_empty() {
                format!("pipeline_init returned {status}")
            } else {
                reason
            }));
        }
        Ok(())
    }

    /// Runs `pipeline_process` on `logs` with fresh fuel and a fresh deadline.
    pub fn process(&mut self, logs: &[&ChainLog]) -> Result<CallReport, PluginError> {
        let started = Instant::now();
        let fuel = self
            .limits
            .fuel_base
            .saturating_add(self.limits.fuel_per_event.saturating_mul(logs.len() as u64));
        let mut buffer = std::mem::take(&mut self.buffer);
        abi::encode_batch(logs.iter().copied(), &mut buffer);
        arm(
            &mut self.store,
            self.metered.then_some(fuel),
            self.epoch_ticks,
        )?;
        let written = self.write_input(&buffer);
        self.buffer = buffer;
        let len = written?;
        let packed = self
            .process
            .call(&mut self.store, len)
            .map_err(|e| classify(&self.store, e))?;
        if packed < 0 {
            return Err(PluginError::ErrorCode(packed));
        }
        let (out_ptr, out_len) = (
            (packed >> 32) as u32 as usize,
            (packed & 0xffff_ffff) as usize,
        );
        if out_len > self.limits.max_output_bytes {
            return Err(PluginError::BadOutput(format!(
                "output of {out_len} bytes exceeds the {} byte limit",
                self.limits.max_output_bytes
            )));
        }
        let data = self.memory.data(&self.store);
        let bytes = data
            .get(out_ptr..out_ptr.saturating_add(out_len))
            .ok_or_else(|| {
                PluginError::BadOutput(format!(
                    "output {out_ptr}+{out_len} lies outside the {} byte memory",
                    data.len()
                ))
            })?;
        let output = abi::decode_output(bytes, logs.len())
            .map_err(|e| PluginError::BadOutput(e.to_string()))?;
        let fuel_left = if self.metered {
            self.store.get_fuel().unwrap_or(0)
        } else {
            fuel
        };
        let state = self.store.data_mut();
        Ok(CallReport {
            output,
            fuel_used: fuel.saturating_sub(fuel_left),
            duration: started.elapsed(),
            logs: std::mem::take(&mut state.logs),
            logs_dropped: std::mem::take(&mut state.logs_dropped),
        })
    }

    /// Logs the guest wrote before it failed; useful in the parked error.
    pub fn take_logs(&mut self) -> Vec<PluginLog> {
        std::mem::take(&mut self.store.data_mut().logs)
    }

    fn write_input(&mut self, bytes: &[u8]) -> Result<i32, PluginError> {
        let len = i32::try_from(bytes.len())
            .map_err(|_| PluginError::BadOutput("input too large".into()))?;
        let ptr = self
            .input
            .call(&mut self.store, len)
            .map_err(|e| classify(&self.store, e))?;
        let start = ptr as u32 as usize;
        self.memory
            .write(&mut self.store, start, bytes)
            .map_err(|_| {
                PluginError::BadOutput(format!(
                    "pipeline_input returned {start}, which cannot hold {len} bytes"
                ))
            })?;
        Ok(len)
    }
}

fn arm(
    store: &mut Store<HostState>,
    fuel: Option<u64>,
    epoch_ticks: u64,
) -> Result<(), PluginError> {
    if let Some(fuel) = fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| PluginError::Instantiate(e.to_string()))?;
    }
    store.set_epoch_deadline(epoch_ticks);
    Ok(())
}

/// Names what went wrong in a failed call, most specific cause first.
fn classify(store: &Store<HostState>, error: wasmtime::Error) -> PluginError {
    let state = store.data();
    if let Some(message) = &state.panic_message {
        return PluginError::Panic(message.clone());
    }
    if state.memory_limit_hit {
        return PluginError::MemoryLimit(state.memory_limit);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel,
        Some(Trap::Interrupt) => PluginError::Timeout,
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{error:#}")),
    }
}
