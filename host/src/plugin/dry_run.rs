//! A dry run of a plugin on sample events with production limits: what `pipeline plugin test`
//! and `POST /v1/plugins/{id}/test` report.

use std::sync::Arc;

use serde::Serialize;

use super::{CompiledPlugin, Decision, Output, Payload, PluginLog, PluginRuntime};
use crate::event::ChainLog;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventResult {
    pub index: usize,
    /// `drop`, `keep` or `error` (the event the plugin reported failing).
    #[schema(value_type = crate::admin::schema::DecisionName)]
    pub decision: &'static str,
    /// The webhook `data` the plugin produced, or null.
    #[schema(value_type = Value)]
    pub data: Option<Payload>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRunReport {
    pub events: usize,
    pub kept: usize,
    pub dropped: usize,
    pub results: Vec<EventResult>,
    pub fuel_used: u64,
    pub duration_us: u64,
    pub calls: usize,
    pub logs: Vec<PluginLog>,
    pub logs_dropped: u32,
    /// The failure that stopped the run, if any (trap, fuel, memory, malformed output, error record).
    pub error: Option<String>,
}

/// Runs `logs` through one instance in batches of `batch_size`, like the pipeline does.
pub fn dry_run(
    runtime: &PluginRuntime,
    plugin: Arc<CompiledPlugin>,
    config_json: &str,
    logs: &[ChainLog],
    batch_size: usize,
) -> DryRunReport {
    dry_run_with_progress(
        runtime,
        plugin,
        config_json,
        logs,
        batch_size,
        &mut |_, _| {},
    )
}

/// [`dry_run`], calling `progress(done, total)` after every plugin call (for `plugin test`'s bar).
pub fn dry_run_with_progress(
    runtime: &PluginRuntime,
    plugin: Arc<CompiledPlugin>,
    config_json: &str,
    logs: &[ChainLog],
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> DryRunReport {
    let mut report = DryRunReport {
        events: logs.len(),
        kept: 0,
        dropped: 0,
        results: Vec::with_capacity(logs.len()),
        fuel_used: 0,
        duration_us: 0,
        calls: 0,
        logs: Vec::new(),
        logs_dropped: 0,
        error: None,
    };
    let mut instance = match runtime.instantiate(plugin, config_json) {
        Ok(instance) => instance,
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    for (chunk_index, chunk) in logs.chunks(batch_size.max(1)).enumerate() {
        let offset = chunk_index * batch_size.max(1);
        let refs: Vec<&ChainLog> = chunk.iter().collect();
        report.calls += 1;
        let call = match instance.process(&refs) {
            Ok(call) => call,
            Err(error) => {
                report.logs.extend(instance.take_logs());
                report.error = Some(format!("batch starting at event {offset}: {error}"));
                return report;
            }
        };
        progress(offset + chunk.len(), logs.len());
        report.fuel_used += call.fuel_used;
        report.duration_us += call.duration.as_micros() as u64;
        report.logs.extend(call.logs);
        report.logs_dropped += call.logs_dropped;
        match call.output {
            Output::Decisions(decisions) => {
                for (i, decision) in decisions.to_vec().into_iter().enumerate() {
                    let (name, data) = match decision {
                        Decision::Drop => ("drop", None),
                        Decision::Keep => ("keep", None),
                        Decision::KeepWith(data) => ("keep", Some(data)),
                    };
                    if name == "keep" {
                        report.kept += 1
                    } else {
                        report.dropped += 1
                    }
                    report.results.push(EventResult {
                        index: offset + i,
                        decision: name,
                        data,
                    });
                }
            }
            Output::Failed {
                event_index,
                message,
            } => {
                report.results.push(EventResult {
                    index: offset + event_index,
                    decision: "error",
                    data: None,
                });
                report.error = Some(format!("event {}: {message}", offset + event_index));
                return report;
            }
        }
    }
    report
}
