//! One live plugin instance: its `Store`, limits, host imports and the call protocol of ABI v1.
//! An instance that failed in any way is never called again; the caller drops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Memory, ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline};

use super::abi::{self, Output};
use super::host_state::{DEMOTE_AFTER_TICKS, HostState};
use super::{CompiledPlugin, PluginError, PluginLog};
use crate::config::PluginLimits;
use crate::event::ChainLog;

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
    /// Calls this instance has answered successfully.
    served: u64,
}

impl PluginInstance {
    /// Instantiates (running any `start` function under limits) and, given a config, passes it
    /// to `pipeline_init` when the module exports it.
    pub fn new(
        plugin: Arc<CompiledPlugin>,
        limits: &PluginLimits,
        epoch_ticks: u64,
        metered: bool,
        config_json: Option<&str>,
    ) -> Result<PluginInstance, PluginError> {
        let state = HostState::new(limits.memory_bytes);
        let mut store = Store::new(plugin.instance_pre.module().engine(), state);
        store.limiter(|state| state as &mut dyn ResourceLimiter);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.ticks_after_demotion == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.demoted = true;
            super::priority::demote_current_thread();
            Ok(UpdateDeadline::Continue(std::mem::take(
                &mut state.ticks_after_demotion,
            )))
        });
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
            served: 0,
        };
        if let (Some(init), Some(config_json)) = (init, config_json) {
            this.init(init, config_json)?;
        }
        Ok(this)
    }

    pub fn plugin(&self) -> &Arc<CompiledPlugin> {
        &self.plugin
    }

    /// Calls this instance has answered successfully: a failure of a fresh instance is the
    /// module's own doing, one of a reused instance may come from state an earlier call left.
    pub fn calls_served(&self) -> u64 {
        self.served
    }

    /// Whether the last call ran long enough for its thread to be demoted.
    pub fn ran_long(&self) -> bool {
        self.store.data().demoted
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
        arm(
            &mut self.store,
            self.metered.then_some(fuel),
            self.epoch_ticks,
        )?;
        let len = self.write_batch(logs)?;
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
        self.served += 1;
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
        let ((_, len), input) = self.input_buffer(bytes.len())?;
        input.copy_from_slice(bytes);
        Ok(len)
    }

    /// Encodes the batch straight into the guest's input buffer (no copy in between).
    fn write_batch(&mut self, logs: &[&ChainLog]) -> Result<i32, PluginError> {
        let len = abi::batch_len(logs.iter().copied());
        let ((start, len), input) = self.input_buffer(len)?;
        abi::encode_batch_into(logs.iter().copied(), input).ok_or_else(|| {
            PluginError::BadOutput(format!("input at {start} cannot hold {len} bytes"))
        })?;
        Ok(len)
    }

    /// Asks the guest for an input buffer of `len` bytes (`pipeline_input`): its offset and
    /// length, and the bytes themselves.
    fn input_buffer(&mut self, len: usize) -> Result<((usize, i32), &mut [u8]), PluginError> {
        let len =
            i32::try_from(len).map_err(|_| PluginError::BadOutput("input too large".into()))?;
        let ptr = self
            .input
            .call(&mut self.store, len)
            .map_err(|e| classify(&self.store, e))?;
        let start = ptr as u32 as usize;
        let input = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(start..start.saturating_add(len as usize))
            .ok_or_else(|| {
                PluginError::BadOutput(format!(
                    "pipeline_input returned {start}, which cannot hold {len} bytes"
                ))
            })?;
        Ok(((start, len), input))
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
    let first = DEMOTE_AFTER_TICKS.min(epoch_ticks);
    let state = store.data_mut();
    state.ticks_after_demotion = epoch_ticks - first;
    state.demoted = false;
    store.set_epoch_deadline(first);
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
    if state.log_out_of_fuel {
        return PluginError::OutOfFuel;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel,
        Some(Trap::Interrupt) => PluginError::Timeout,
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{error:#}")),
    }
}
