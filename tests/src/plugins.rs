//! Plugin modules for the tests: the example plugins built by scripts/test.sh, and hand-written
//! WAT modules (a plugin that traps, modules that are not plugins).

use std::path::PathBuf;

use crate::target_dir;

/// `<target dir>/wasm32-unknown-unknown/release/<crate name with _>.wasm`
pub fn wasm_path(crate_name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// The bytes of an example plugin (e.g. "erc20-transfers").
pub fn example_plugin(crate_name: &str) -> Vec<u8> {
    let path = wasm_path(crate_name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "plugin {crate_name} not found at {} ({e}): run scripts/test.sh (it runs `cargo build --release \
             --target wasm32-unknown-unknown -p {crate_name}`)",
            path.display()
        )
    });
    assert!(
        bytes.starts_with(b"\0asm"),
        "{} is not a wasm module",
        path.display()
    );
    bytes
}

/// `pipeline_input` of the WAT modules: the buffer starts at 64 KiB; memory grows to hold `cap` bytes.
const INPUT_FN: &str = r#"
  (func (export "pipeline_input") (param $cap i32) (result i32)
    (local $need i32)
    ;; pages needed = ceil((65536 + cap) / 65536)
    (local.set $need (i32.shr_u (i32.add (local.get $cap) (i32.const 131071)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then unreachable))))
    (i32.const 65536))
"#;

fn compile(wat_src: &str) -> Vec<u8> {
    wat::parse_str(wat_src).unwrap_or_else(|e| panic!("test WAT does not compile: {e}\n{wat_src}"))
}

/// A valid ABI v1 plugin whose `pipeline_process` always traps (`unreachable`).
pub fn trap_plugin() -> Vec<u8> {
    compile(&format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "pipeline_abi_v1"))
  {INPUT_FN}
  (func (export "pipeline_process") (param $len i32) (result i64)
    unreachable))"#
    ))
}

/// A module with every ABI export except the `pipeline_abi_v1` marker (so: not a plugin).
pub fn missing_marker_module() -> Vec<u8> {
    compile(&format!(
        r#"(module
  (memory (export "memory") 2)
  {INPUT_FN}
  (func (export "pipeline_process") (param $len i32) (result i64)
    ;; one event count of 0 at offset 0, no error: out_ptr 0, out_len 5
    (i64.const 5)))"#
    ))
}

/// A valid ABI v1 plugin that keeps every event with `data = null` (output built in place).
pub fn keep_all_plugin() -> Vec<u8> {
    compile(&format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "pipeline_abi_v1"))
  {INPUT_FN}
  ;; output at offset 0: u32 count (copied from the input), count × decision 1, has_error 0
  (func (export "pipeline_process") (param $len i32) (result i64)
    (local $n i32) (local $i i32)
    (local.set $n (i32.load (i32.const 65536)))
    (i32.store (i32.const 0) (local.get $n))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8 (i32.add (i32.const 4) (local.get $i)) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store8 (i32.add (i32.const 4) (local.get $n)) (i32.const 0))
    (i64.extend_i32_u (i32.add (local.get $n) (i32.const 5)))))"#
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wat_modules_compile() {
        for bytes in [
            super::trap_plugin(),
            super::missing_marker_module(),
            super::keep_all_plugin(),
        ] {
            assert!(bytes.starts_with(b"\0asm"));
        }
    }
}
