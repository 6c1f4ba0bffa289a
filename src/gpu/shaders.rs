//! The WGSL sources, embedded at build time. Every kernel file is compiled
//! with its fragments (see [`FRAGMENTS`]) and `shaders/common.wgsl`
//! appended (after it, so the compiler's line numbers still point into the
//! kernel file).

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Shared pieces of several kernels that are not kernels themselves:
/// `(fragment file stem, the kernels it is appended to)`.
pub const FRAGMENTS: &[(&str, &[&str])] = &[
    (
        "attention_common",
        &["attention", "attention_coopmat", "attention_tiled"],
    ),
    ("linear_common", &["linear", "linear_coopmat", "linear_tiled"]),
];

const FRAGMENT_TEXT: &[(&str, &str)] = &[
    (
        "attention_common",
        include_str!("../../shaders/attention_common.wgsl"),
    ),
    ("linear_common", include_str!("../../shaders/linear_common.wgsl")),
];

macro_rules! shader_table {
    ($($name:literal),* $(,)?) => {
        const KERNELS: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../shaders/", $name, ".wgsl")))),*
        ];
    };
}

shader_table![
    "attention",
    "attention_coopmat",
    "attention_tiled",
    "conv2d",
    "elementwise",
    "finite",
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
pub const TEMPLATES: &[(&str, &str, &[u32])] = &[
    ("attention", "MAX_D_PLACEHOLDER", &[128]),
    ("attention_tiled", "MAX_D_PLACEHOLDER", &[64, 128]),
];

/// Storage-type tokens: `token` in a kernel (or its fragments) names the
/// element type of an activation binding, `f32` (value 0) or `f16` (value
/// 1, which also enables WGSL's f16 extension: the device needs
/// shader-f16). Picked through [`Kernel::template`] like [`TEMPLATES`].
///
/// [`Kernel::template`]: super::Kernel::template
pub const STORAGE_TYPES: &[(&str, &str)] = &[
    ("attention", "Q_T"),
    ("attention", "KV_T"),
    ("attention", "O_T"),
    ("attention_coopmat", "Q_T"),
    ("attention_coopmat", "KV_T"),
    ("attention_coopmat", "O_T"),
    ("attention_tiled", "Q_T"),
    ("attention_tiled", "KV_T"),
    ("attention_tiled", "O_T"),
    ("finite", "ACT_T"),
    ("linear", "ACT_T"),
    ("linear", "OUT_T"),
    ("linear_coopmat", "ACT_T"),
    ("linear_coopmat", "OUT_T"),
    ("linear_tiled", "ACT_T"),
    ("linear_tiled", "OUT_T"),
    ("modulate", "ACT_T"),
    ("norm", "ACT_T"),
    ("norm", "OUT_T"),
    ("rope", "ACT_T"),
    ("rows", "DST_T"),
];

/// `(token, values)` of every template of kernel `name`.
fn tokens_of(name: &str) -> Vec<(&'static str, &'static [u32])> {
    let numeric = TEMPLATES
        .iter()
        .filter(|(k, _, _)| *k == name)
        .map(|&(_, t, v)| (t, v));
    let types = STORAGE_TYPES
        .iter()
        .filter(|(k, _)| *k == name)
        .map(|&(_, t)| (t, &[0u32, 1][..]));
    numeric.chain(types).collect()
}

/// The full source of kernel `name` as the device compiles it, with each
/// template token replaced by its value in `subs`. None when there is no
/// such kernel, a token of it has no value in `subs`, a value is not one
/// of the token's `values`, or `subs` names a token the kernel lacks.
pub(crate) fn source(name: &str, subs: &[(&str, u32)]) -> Option<String> {
    let (_, text) = KERNELS.iter().find(|(n, _)| *n == name)?;
    let mut text = text.to_string();
    for (fragment, kernels) in FRAGMENTS {
        if kernels.contains(&name) {
            let (_, body) = FRAGMENT_TEXT.iter().find(|(f, _)| f == fragment)?;
            text = format!("{text}\n{body}");
        }
    }
    let tokens = tokens_of(name);
    let mut f16 = false;
    for (token, values) in &tokens {
        let &(_, v) = subs.iter().find(|(t, _)| t == token)?;
        if !values.contains(&v) {
            return None;
        }
        let value = if STORAGE_TYPES.iter().any(|(k, t)| *k == name && t == token) {
            f16 |= v == 1;
            if v == 1 { "f16" } else { "f32" }.to_string()
        } else {
            format!("{v}u")
        };
        text = text.replace(token, &value);
    }
    if subs
        .iter()
        .any(|(t, _)| !tokens.iter().any(|(token, _)| token == t))
    {
        return None;
    }
    // `enable` must open the module; the coopmat kernels already have it.
    if f16 && !text.contains("enable f16;") {
        text = format!("enable f16;\n{text}");
    }
    Some(format!("{text}\n{COMMON}"))
}

/// Every kernel's composed source, once per combination of template
/// values: `(file name [+ token=value ...], source)`. Used by the naga
/// validation test.
pub fn all_sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, _) in KERNELS {
        let path = format!("shaders/{name}.wgsl");
        let tokens = tokens_of(name);
        let mut combos: Vec<Vec<(&str, u32)>> = vec![Vec::new()];
        for (token, values) in &tokens {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |&v| {
                        let mut c = c.clone();
                        c.push((*token, v));
                        c
                    })
                })
                .collect();
        }
        for subs in combos {
            let label = match subs.is_empty() {
                true => path.clone(),
                false => {
                    let values: Vec<String> = subs.iter().map(|(t, v)| format!("{t}={v}")).collect();
                    format!("{path} [{}]", values.join(" "))
                }
            };
            out.extend(source(name, &subs).map(|s| (label, s)));
        }
    }
    out
}
