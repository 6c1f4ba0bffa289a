//! The library's error type. Every variant says what went wrong and, where
//! the user can act on it, what to do.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no usable GPU adapter found{filter}: {hint}")]
    NoAdapter { filter: AdapterFilter, hint: String },

    #[error(
        "could not create a device on adapter '{adapter}': {message}. Update the GPU driver, or \
         pick another adapter with --adapter (`ras info` lists them)"
    )]
    Device { adapter: String, message: String },

    #[error("{what} needs {needed} but this device allows at most {max}{hint}")]
    Limit {
        what: String,
        needed: u64,
        max: u64,
        hint: String,
    },

    #[error(
        "shader '{shader}' (entry '{entry}') failed to compile: {message}. This is a bug in ras \
         or the driver: try RAS_KERNELS=portable, and please report it with `ras info`'s output"
    )]
    ShaderCompile {
        shader: String,
        entry: String,
        message: String,
    },

    #[error("{op}: shape mismatch: {message}")]
    Shape { op: &'static str, message: String },

    #[error("{op}: unsupported dtype {dtype}: {message}")]
    DType {
        op: &'static str,
        dtype: String,
        message: String,
    },

    #[error("{op}: index {index} out of range for {len} rows")]
    IndexOutOfRange { op: &'static str, index: u64, len: u64 },

    #[error(
        "GPU out of memory while {context}: {message}; use a smaller size, --precision f16, \
         --no-t5, or a device with more memory"
    )]
    OutOfMemory { context: String, message: String },

    /// Admission: a request estimated not to fit, refused before any work.
    #[error(
        "this request needs about {needed_mib} MiB of GPU memory at its peak, more than {what} \
         ({limit_mib} MiB): {breakdown}. Try {hint}"
    )]
    MemoryBudget {
        needed_mib: u64,
        limit_mib: u64,
        what: String,
        breakdown: String,
        hint: String,
    },

    #[error(
        "GPU validation error while {context}: {message}. This is a bug in ras or the driver: \
         please report it with the command line and `ras info`'s output"
    )]
    Validation { context: String, message: String },

    /// The device is gone (driver reset, GPU removed, the host destroyed
    /// it); every later call on it fails the same way.
    #[error(
        "GPU device lost ({message}). Nothing more can run on this device: open a new one \
         (a new Gpu and Pipeline); if it keeps happening, try a smaller size or another adapter"
    )]
    DeviceLost { message: String },

    #[error("weights: {path}: {message}")]
    WeightFile { path: String, message: String },

    #[error("weights: missing tensor '{key}' (looked in {files}); is this the right model folder?")]
    MissingWeight { key: String, files: String },

    #[error("weights: tensor '{key}' in {file} has shape {got:?}, expected {expected:?}; the config does not match the weights")]
    WeightShape {
        key: String,
        file: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    #[error("weights: tensor '{key}' in {file} has dtype {dtype}; only F32, F16 and BF16 are supported")]
    WeightDType {
        key: String,
        file: String,
        dtype: String,
    },

    #[error("{path}: {message}")]
    Config { path: String, message: String },

    #[error("tokenizer file {path}: {message}. Download the model folder's tokenizer again")]
    TokenizerFile { path: String, message: String },

    #[error("tokenizing the prompt failed: {0}")]
    Tokenize(String),

    #[error("cancelled")]
    Cancelled,

    /// A NaN or an infinity where a value belongs: the run stopped there
    /// and produced no image.
    #[error(
        "NaN or infinity in {what}; the run was stopped and nothing was written. \
         If it happens only with --precision f16, use f32 (an activation overflowed); \
         otherwise the model's weights may hold NaN: check or re-download its files"
    )]
    NonFinite { what: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// The adapter filter the user gave, printed inside `NoAdapter`.
#[derive(Debug, Clone, Default)]
pub struct AdapterFilter(pub Option<String>);

impl fmt::Display for AdapterFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " matching '{s}'"),
            None => Ok(()),
        }
    }
}

impl Error {
    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}
