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
}

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
