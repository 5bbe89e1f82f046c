//! Finding the example plugins' wasm for `pipeline dev`, building them when run from the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example plugins, by package name; the file is the package name with `_` for `-`.
pub const EXAMPLES: &[&str] = &[
    "erc20-transfers",
    "passthrough",
    "address-watch",
    "uniswap-v3-swaps",
];
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The example plugins found (built first when missing and the repository is at hand).
pub fn example_plugins() -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    if find("erc20-transfers").is_none()
        && Path::new("plugins/erc20-transfers/Cargo.toml").is_file()
    {
        build_examples();
    }
    let mut found = Vec::new();
    for name in EXAMPLES {
        if let Some(path) = find(name) {
            let bytes = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            found.push((*name, bytes));
        }
    }
    Ok(found)
}

fn file_name(package: &str) -> String {
    format!("{}.wasm", package.replace('-', "_"))
}

/// Where built plugins may be: `$PIPELINE_PLUGINS_DIR`, beside this binary's cargo target folder,
/// the current folder's `target/`, and the container image's `/opt/pipeline/plugins`.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PIPELINE_PLUGINS_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok();
    if let Some(target) = exe.as_deref().and_then(Path::parent).and_then(Path::parent) {
        dirs.push(target.join(WASM_TARGET).join("release"));
    }
    dirs.push(PathBuf::from("target").join(WASM_TARGET).join("release"));
    dirs.push(PathBuf::from("/opt/pipeline/plugins"));
    dirs
}

fn find(package: &str) -> Option<PathBuf> {
    candidate_dirs()
        .into_iter()
        .map(|dir| dir.join(file_name(package)))
        .find(|p| p.is_file())
}

/// `cargo build --release --target wasm32-unknown-unknown` of the examples (adding the target with
/// rustup first when it is missing). Failures are reported; `dev` then runs without plugins.
fn build_examples() {
    println!("building the example plugins (cargo build --release --target {WASM_TARGET}) …");
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if installed.is_ok_and(|o| {
        !String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l == WASM_TARGET)
    }) {
        let _ = Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status();
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "--release", "--target", WASM_TARGET]);
    for name in EXAMPLES {
        cargo.args(["-p", name]);
    }
    match cargo.status() {
        Ok(status) if status.success() => {}
        Ok(status) => println!("building the plugins failed ({status}); see the output above"),
        Err(error) => println!("cannot run cargo to build the plugins: {error}"),
    }
}
