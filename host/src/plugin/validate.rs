//! Upload-time checks: is this a well-formed ABI v1 plugin that imports nothing it may not?

use wasmtime::{Engine, ExternType, FuncType, Module, ValType};

/// Why a module was refused. `code()` is the stable string clients branch on.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ValidationError {
    #[error("module is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly module: {0}")]
    InvalidWasm(String),
    #[error(
        "missing export `{0}` (ABI v1 requires memory, pipeline_abi_v1, pipeline_input, pipeline_process)"
    )]
    MissingExport(&'static str),
    #[error("export `{name}` has type {found}; ABI v1 requires {expected}")]
    BadSignature {
        name: String,
        expected: &'static str,
        found: String,
    },
    #[error(
        "import `{module}.{name}` is not allowed; plugins may import only pipeline.log and pipeline.panic"
    )]
    ForbiddenImport { module: String, name: String },
    #[error("compilation failed: {0}")]
    CompileFailed(String),
    #[error("compilation took longer than {0} ms")]
    CompileTimeout(u64),
    /// The host could not run its compiler (not the module's fault).
    #[error("the plugin compiler is unavailable: {0}")]
    CompilerUnavailable(String),
    #[error(
        "memory declares a minimum of {declared} bytes; the plugin memory limit is {limit} bytes"
    )]
    MemoryTooLarge { declared: u64, limit: usize },
    #[error(
        "a table declares a minimum of {declared} elements; the limit is {limit} (elements count against the {memory_limit} byte memory limit)"
    )]
    TableTooLarge {
        declared: u64,
        limit: u64,
        memory_limit: usize,
    },
    #[error("the module declares {count} {what}; a plugin may have at most {limit}")]
    TooMany {
        what: &'static str,
        count: u32,
        limit: u32,
    },
    #[error(
        "instantiating the module (its data, tables and `start` function) did not finish within the plugin limits: {0}"
    )]
    StartDidNotFinish(String),
    #[error("instantiating the module failed: {0}")]
    InstantiationFailed(String),
}

/// Tables, memories and globals a plugin may declare: ABI v1 needs one memory, and a compiled
/// language needs at most one table (indirect calls) and a handful of globals.
pub const MAX_TABLES: u32 = 1;
pub const MAX_MEMORIES: u32 = 1;
pub const MAX_GLOBALS: u32 = 100;
/// Elements one table may hold, whatever the memory limit.
pub const MAX_TABLE_ELEMENTS: u64 = 100_000;
/// Bytes one table element is counted as against the memory limit.
pub const TABLE_ELEMENT_BYTES: u64 = 8;
const WASM_PAGE: u64 = 65_536;

impl ValidationError {
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::TooLarge { .. } => "too_large",
            ValidationError::InvalidWasm(_) => "invalid_wasm",
            ValidationError::MissingExport(_) => "missing_export",
            ValidationError::BadSignature { .. } => "bad_signature",
            ValidationError::ForbiddenImport { .. } => "forbidden_import",
            ValidationError::CompileFailed(_) => "compile_failed",
            ValidationError::CompileTimeout(_) => "compile_timeout",
            ValidationError::CompilerUnavailable(_) => "compiler_unavailable",
            ValidationError::MemoryTooLarge { .. } => "memory_too_large",
            ValidationError::TableTooLarge { .. } => "table_too_large",
            ValidationError::TooMany { what: "tables", .. } => "too_many_tables",
            ValidationError::TooMany {
                what: "memories", ..
            } => "too_many_memories",
            ValidationError::TooMany { .. } => "too_many_globals",
            ValidationError::StartDidNotFinish(_) => "start_did_not_finish",
            ValidationError::InstantiationFailed(_) => "instantiation_failed",
        }
    }
}

/// Checks everything that needs no compilation: size, magic, well-formedness.
pub fn check_bytes(engine: &Engine, bytes: &[u8], max_size: usize) -> Result<(), ValidationError> {
    if bytes.len() > max_size {
        return Err(ValidationError::TooLarge {
            size: bytes.len(),
            limit: max_size,
        });
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(ValidationError::InvalidWasm(
            "the bytes do not start with the \\0asm header".into(),
        ));
    }
    if bytes.get(4..8) != Some(&[1, 0, 0, 0]) {
        return Err(ValidationError::InvalidWasm(
            "not a core module (version 1); components are not supported".into(),
        ));
    }
    Module::validate(engine, bytes).map_err(|e| ValidationError::InvalidWasm(format!("{e:#}")))
}

/// Checks what the module declares against the plugin limits: memory and table minimums, and
/// how many tables, memories and globals it has. Such a module could never run, or would hold
/// memory outside the cap, so it is refused at upload rather than quarantined later.
pub fn check_resources(bytes: &[u8], memory_limit: usize) -> Result<(), ValidationError> {
    use wasmparser::{Parser, Payload};
    let invalid = |e: wasmparser::BinaryReaderError| ValidationError::InvalidWasm(e.to_string());
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::MemorySection(memories) => {
                at_most("memories", memories.count(), MAX_MEMORIES)?;
                for memory in memories {
                    let declared = memory.map_err(invalid)?.initial.saturating_mul(WASM_PAGE);
                    if declared > memory_limit as u64 {
                        return Err(ValidationError::MemoryTooLarge {
                            declared,
                            limit: memory_limit,
                        });
                    }
                }
            }
            Payload::TableSection(tables) => {
                at_most("tables", tables.count(), MAX_TABLES)?;
                let limit = MAX_TABLE_ELEMENTS.min(memory_limit as u64 / TABLE_ELEMENT_BYTES);
                for table in tables {
                    let declared = table.map_err(invalid)?.ty.initial;
                    if declared > limit {
                        return Err(ValidationError::TableTooLarge {
                            declared,
                            limit,
                            memory_limit,
                        });
                    }
                }
            }
            Payload::GlobalSection(globals) => at_most("globals", globals.count(), MAX_GLOBALS)?,
            _ => {}
        }
    }
    Ok(())
}

fn at_most(what: &'static str, count: u32, limit: u32) -> Result<(), ValidationError> {
    if count > limit {
        return Err(ValidationError::TooMany { what, count, limit });
    }
    Ok(())
}

/// Checks a compiled module's imports and exports against ABI v1.
pub fn check_interface(module: &Module) -> Result<(), ValidationError> {
    for import in module.imports() {
        let expected = match (import.module(), import.name()) {
            ("pipeline", "log") => "(i32, i32, i32) -> ()",
            ("pipeline", "panic") => "(i32, i32) -> ()",
            (m, n) => {
                return Err(ValidationError::ForbiddenImport {
                    module: m.into(),
                    name: n.into(),
                });
            }
        };
        check_func(
            &format!("pipeline.{}", import.name()),
            import.ty(),
            expected,
        )?;
    }
    let export = |name: &'static str| {
        module
            .get_export(name)
            .ok_or(ValidationError::MissingExport(name))
    };
    match export("memory")? {
        ExternType::Memory(m) if !m.is_64() && !m.is_shared() => {}
        other => {
            return Err(ValidationError::BadSignature {
                name: "memory".into(),
                expected: "a 32-bit, unshared memory",
                found: describe(&other),
            });
        }
    }
    check_func("pipeline_abi_v1", export("pipeline_abi_v1")?, "() -> ()")?;
    check_func("pipeline_input", export("pipeline_input")?, "(i32) -> i32")?;
    check_func(
        "pipeline_process",
        export("pipeline_process")?,
        "(i32) -> i64",
    )?;
    if let Some(init) = module.get_export("pipeline_init") {
        check_func("pipeline_init", init, "(i32) -> i32")?;
    }
    Ok(())
}

fn check_func(name: &str, ty: ExternType, expected: &'static str) -> Result<(), ValidationError> {
    let found = describe(&ty);
    if found == expected {
        Ok(())
    } else {
        Err(ValidationError::BadSignature {
            name: name.to_string(),
            expected,
            found,
        })
    }
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => describe_func(f),
        ExternType::Memory(_) => "memory".into(),
        ExternType::Table(_) => "table".into(),
        ExternType::Global(_) => "global".into(),
        _ => "another kind of export".into(),
    }
}

fn describe_func(f: &FuncType) -> String {
    let list = |types: &mut dyn Iterator<Item = ValType>| {
        types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    };
    let params = list(&mut f.params());
    let results: Vec<String> = f.results().map(|t| t.to_string()).collect();
    let results = match results.len() {
        0 => "()".to_string(),
        1 => results[0].clone(),
        _ => format!("({})", results.join(", ")),
    };
    format!("({params}) -> {results}")
}
