//! `pipeline plugin new NAME`: a plugin crate that builds, tests and passes `pipeline plugin test`
//! as generated — a typed config, a `sol!` event, native tests on recorded mainnet logs, and the
//! build and try commands in its README.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::fixtures;

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("scaffold/lib.rs.tmpl");
const TEST_RS: &str = include_str!("scaffold/test.rs.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");
const CARGO_CONFIG: &str = include_str!("scaffold/cargo-config.toml.tmpl");
/// keccak256("Approval(address,address,uint256)")
const APPROVAL_TOPIC0: &str = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925";
const RECORDED_APPROVALS: usize = 4;
const RECORDED_OTHERS: usize = 3;

/// Writes the crate into `dir/NAME` (which must not exist); returns its path.
pub fn new_plugin(name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk = match sdk {
        Some(path) => path.to_path_buf(),
        None => {
            find_sdk().context("cannot find Pipeline's guest-sdk/; pass --sdk PATH/TO/guest-sdk")?
        }
    };
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("the SDK path {} does not exist", sdk.display()))?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml: is it Pipeline's guest-sdk/?",
            sdk.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{approvals}}", &RECORDED_APPROVALS.to_string())
            .replace("{{others}}", &RECORDED_OTHERS.to_string())
    };
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::create_dir_all(root.join("tests"))?;
    std::fs::create_dir_all(root.join(".cargo"))?;
    write(&root.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&root.join("src/lib.rs"), &fill(LIB_RS))?;
    write(&root.join("tests/plugin.rs"), &fill(TEST_RS))?;
    write(&root.join("tests/recorded.jsonl"), &recorded_logs()?)?;
    write(&root.join("README.md"), &fill(README))?;
    write(&root.join(".cargo/config.toml"), CARGO_CONFIG)?;
    write(&root.join(".gitignore"), "/target\n")?;
    // The workspace's lock file pins versions the SDK is tested with; cargo trims what is unused.
    if let Some(lock) = sdk
        .parent()
        .map(|p| p.join("Cargo.lock"))
        .filter(|p| p.is_file())
    {
        std::fs::copy(&lock, root.join("Cargo.lock")).context("copy Cargo.lock")?;
    }
    Ok(root)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if !valid {
        bail!(
            "a plugin name is lowercase letters, digits, - and _, starting with a letter (got {name:?})"
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Pipeline's `guest-sdk/`: in the current folder or one above it, or beside this binary's
/// `target/` (a binary run from a checkout).
fn find_sdk() -> Option<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    starts.iter().find_map(|start| {
        start
            .ancestors()
            .map(|dir| dir.join("guest-sdk"))
            .find(|sdk| sdk.join("Cargo.toml").is_file())
    })
}

/// The first recorded ERC-20 approvals, then a few other recorded logs.
fn recorded_logs() -> anyhow::Result<String> {
    let text = fixtures::mainnet_logs()?;
    let is_approval = |line: &&str| {
        line.contains(APPROVAL_TOPIC0)
            && serde_json::from_str::<serde_json::Value>(line).is_ok_and(|log| {
                log["topics"]
                    .as_array()
                    .is_some_and(|t| t.len() == 3 && t[0] == APPROVAL_TOPIC0)
                    && log["data"].as_str().is_some_and(|d| d.len() == 66)
            })
    };
    let approvals = text.lines().filter(is_approval).take(RECORDED_APPROVALS);
    let others = text
        .lines()
        .filter(|l| !l.contains(APPROVAL_TOPIC0))
        .take(RECORDED_OTHERS);
    let mut out = String::new();
    for line in approvals.chain(others) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn writes_a_crate_with_recorded_logs_and_refuses_bad_names() {
        let dir = std::env::temp_dir().join(format!("pipeline-scaffold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        let root = new_plugin("my-filter", &dir, Some(&sdk)).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-filter\"") && manifest.contains("guest-sdk"));
        // The example plugins' build settings: one codegen unit for the plugin, more inlining
        // and SIMD for its wasm.
        assert!(manifest.contains("[profile.release.package.my-filter]\ncodegen-units = 1"));
        let cargo_config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
        assert!(
            cargo_config.contains("[target.wasm32-unknown-unknown]")
                && cargo_config.contains("-inline-threshold=1000")
                && cargo_config.contains("target-feature=+simd128"),
            "{cargo_config}"
        );
        let tests = std::fs::read_to_string(root.join("tests/plugin.rs")).unwrap();
        assert!(
            tests.contains("use my_filter::{Config, process};"),
            "{tests}"
        );
        let recorded = std::fs::read_to_string(root.join("tests/recorded.jsonl")).unwrap();
        assert_eq!(
            recorded.lines().count(),
            RECORDED_APPROVALS + RECORDED_OTHERS
        );
        assert!(
            new_plugin("my-filter", &dir, Some(&sdk)).is_err(),
            "an existing folder is kept"
        );
        for bad in ["", "My", "1x", "a b", "../x"] {
            assert!(new_plugin(bad, &dir, Some(&sdk)).is_err(), "{bad:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
