//! The recorded mainnet logs of the repository's `fixtures/` folder (nothing outside the repository).

use std::io::Read;
use std::path::PathBuf;

use crate::workspace_root;

/// `fixtures/mainnet-logs.jsonl.zst`: 21,786 recorded mainnet logs (zstd).
pub fn mainnet_logs_path() -> PathBuf {
    let path = workspace_root().join("fixtures/mainnet-logs.jsonl.zst");
    assert!(
        path.is_file(),
        "the recorded mainnet logs are missing at {}",
        path.display()
    );
    path
}

/// The recorded mainnet logs as JSON lines, unpacked here with `ruzstd` (independently of the host).
pub fn mainnet_logs_text() -> String {
    let packed = std::fs::read(mainnet_logs_path()).expect("read the mainnet fixture");
    let mut source = packed.as_slice();
    let mut decoder =
        ruzstd::decoding::StreamingDecoder::new(&mut source).expect("a zstd frame in the fixture");
    let mut text = String::new();
    decoder
        .read_to_string(&mut text)
        .expect("unpack the mainnet fixture");
    text
}
