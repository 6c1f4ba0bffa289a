//! The WGSL sources, embedded at build time. Every kernel file is compiled
//! with its fragments (see [`FRAGMENTS`]) and `shaders/common.wgsl`
//! appended (after it, so the compiler's line numbers still point into the
//! kernel file).

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Shared pieces of several kernels that are not kernels themselves:
/// `(fragment file stem, the kernels it is appended to)`.
pub const FRAGMENTS: &[(&str, &[&str])] = &[("linear_common", &["linear", "linear_coopmat", "linear_tiled"])];

const FRAGMENT_TEXT: &[(&str, &str)] = &[("linear_common", include_str!("../../shaders/linear_common.wgsl"))];

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
    "linear_coopmat",
    "linear_tiled",
    "metric",
    "modulate",
    "norm",
    "patch",
    "rope",
    "rows",
    "sampler",
    "texture",
    "upsample",
];

/// Template tokens: a kernel file may contain `token` where WGSL needs a
/// constant expression that override constants cannot give (array sizes).
/// The launcher picks one of `values` through [`Kernel::template`], each
/// value is a separate shader module, and the validation test checks all of
/// them. `(kernel, token, values)`; a value is substituted as a u32 literal.
///
/// [`Kernel::template`]: super::Kernel::template
pub const TEMPLATES: &[(&str, &str, &[u32])] = &[("attention", "MAX_D_PLACEHOLDER", &[128])];

/// The full source of kernel `name` as the device compiles it, with each
/// template token replaced by its value in `subs`. None when there is no
/// such kernel, a token of it has no value in `subs`, a value is not one
/// of the token's `values`, or `subs` names a token the kernel lacks.
pub(crate) fn source(name: &str, subs: &[(&str, u32)]) -> Option<String> {
    let (_, text) = KERNELS.iter().find(|(n, _)| *n == name)?;
    let tokens: Vec<_> = TEMPLATES.iter().filter(|(k, _, _)| *k == name).collect();
    let mut text = text.to_string();
    for (_, token, values) in &tokens {
        let &(_, v) = subs.iter().find(|(t, _)| t == token)?;
        if !values.contains(&v) {
            return None;
        }
        text = text.replace(token, &format!("{v}u"));
    }
    if subs
        .iter()
        .any(|(t, _)| !tokens.iter().any(|(_, token, _)| token == t))
    {
        return None;
    }
    for (fragment, kernels) in FRAGMENTS {
        if kernels.contains(&name) {
            let (_, body) = FRAGMENT_TEXT.iter().find(|(f, _)| f == fragment)?;
            text = format!("{text}\n{body}");
        }
    }
    Some(format!("{text}\n{COMMON}"))
}

/// Every kernel's composed source, once per template value: `(file name
/// [+ token=value], source)`. Used by the naga validation test.
pub fn all_sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, _) in KERNELS {
        let path = format!("shaders/{name}.wgsl");
        match TEMPLATES.iter().find(|(k, _, _)| k == name) {
            None => out.extend(source(name, &[]).map(|s| (path, s))),
            Some((_, token, values)) => {
                for &v in *values {
                    let variant = format!("{path} [{token}={v}]");
                    out.extend(source(name, &[(token, v)]).map(|s| (variant, s)));
                }
            }
        }
    }
    out
}
