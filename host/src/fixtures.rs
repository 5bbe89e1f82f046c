//! The recorded mainnet logs of `fixtures/`, carried inside the binary (zstd, ~1 MB) so that
//! `pipeline dev`, `pipeline dev-node` and `pipeline plugin test` work with nothing beside the binary,
//! and reading of event files that may be zstd-compressed.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use ruzstd::decoding::StreamingDecoder;

/// `fixtures/mainnet-logs.jsonl.zst`: 21,786 recorded mainnet logs, one JSON-RPC log object a line.
const MAINNET_LOGS_ZST: &[u8] = include_bytes!("../../fixtures/mainnet-logs.jsonl.zst");

/// The recorded mainnet logs as JSON lines (sorted by block number, log index).
pub fn mainnet_logs() -> anyhow::Result<String> {
    unzstd(MAINNET_LOGS_ZST).context("the embedded mainnet fixture")
}

/// Reads a text file of events, unpacking it first when its name ends in `.zst`.
pub fn read_events_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|ext| ext == "zst") {
        unzstd(&bytes).with_context(|| format!("cannot unpack {} (zstd)", path.display()))
    } else {
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
    }
}

fn unzstd(mut bytes: &[u8]) -> anyhow::Result<String> {
    let mut decoder = StreamingDecoder::new(&mut bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut text = String::new();
    decoder.read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_embedded_corpus_is_the_whole_recorded_mainnet_set() {
        let text = mainnet_logs().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21_786);
        for line in [lines[0], lines[lines.len() - 1]] {
            crate::event::ChainLog::from_json(line).unwrap();
        }
    }

    #[test]
    fn reads_plain_and_compressed_event_files_alike() {
        let dir = std::env::temp_dir().join(format!("pipeline-fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("events.jsonl");
        std::fs::write(&plain, "{\"a\":1}\n").unwrap();
        assert_eq!(read_events_file(&plain).unwrap(), "{\"a\":1}\n");
        let packed = dir.join("events.jsonl.zst");
        std::fs::write(&packed, MAINNET_LOGS_ZST).unwrap();
        assert_eq!(read_events_file(&packed).unwrap(), mainnet_logs().unwrap());
        let broken = dir.join("broken.jsonl.zst");
        std::fs::write(&broken, b"not zstd").unwrap();
        let error = read_events_file(&broken).unwrap_err();
        assert!(format!("{error:#}").contains("zstd"), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
