//! The WGSL sources, embedded at build time. Every kernel file is compiled
//! with `shaders/common.wgsl` appended (after it, so the compiler's line
//! numbers still point into the kernel file).

const COMMON: &str = include_str!("../../shaders/common.wgsl");

macro_rules! shader_table {
    ($($name:literal),* $(,)?) => {
        const KERNELS: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../shaders/", $name, ".wgsl")))),*
        ];
    };
}

shader_table![
    "attention",
    "conv2d",
    "elementwise",
    "linear",
    "metric",
    "modulate",
    "norm",
    "patch",
    "rope",
    "rows",
    "sampler",
    "upsample",
];

/// The full source of kernel `name` as the device compiles it.
pub(crate) fn source(name: &str) -> Option<String> {
    KERNELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| format!("{s}\n{COMMON}"))
}

/// Every kernel's composed source: `(file name, source)`. Used by the naga
/// validation test.
pub fn all_sources() -> Vec<(String, String)> {
    KERNELS
        .iter()
        .map(|(n, s)| (format!("shaders/{n}.wgsl"), format!("{s}\n{COMMON}")))
        .collect()
}
