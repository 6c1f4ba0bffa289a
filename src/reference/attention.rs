//! Reference for `shaders/attention.wgsl`: the full score matrix, one row at
//! a time, in f64.

/// Sizes of one attention call; Q is `[b, lq, hq, d]`, K and V `[b, lk, hkv, d]`.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub b: usize,
    pub lq: usize,
    pub lk: usize,
    pub hq: usize,
    pub hkv: usize,
    pub d: usize,
}

/// What [`attention_with`] takes beyond Q, K and V (see
/// `kernels::attention::AttentionOptions`).
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// `[b, lk]`, added to every query's score of the key; −∞ masks it.
    pub key_bias: Option<&'a [f32]>,
    /// Query `i` sees keys `j <= i + offset`.
    pub causal: Option<usize>,
    /// `[hq, lq, lk]`, added to the scaled scores.
    pub bias: Option<&'a [f32]>,
    pub scale: f32,
}

/// `softmax(Q·Kᵀ·scale + key_bias[b, j])·V` over the keys whose key bias
/// is not −∞; a query with no such key gives 0.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], key_bias: Option<&[f32]>, n: Dims, scale: f32) -> Vec<f32> {
    let opts = Options {
        key_bias,
        causal: None,
        bias: None,
        scale,
    };
    attention_with(q, k, v, &opts, n)
}

/// `softmax(Q·Kᵀ·scale + bias[h, i, j] + key_bias[b, j])·V` over the keys
/// `j` whose key bias is not −∞ and, when causal, `j <= i + offset`; a
/// query with no such key gives 0.
pub fn attention_with(q: &[f32], k: &[f32], v: &[f32], opts: &Options, n: Dims) -> Vec<f32> {
    let &Options {
        key_bias,
        causal,
        bias,
        scale,
    } = opts;
    let Dims {
        b,
        lq,
        lk,
        hq,
        hkv,
        d,
    } = n;
    let group = hq / hkv;
    let mut out = vec![0.0f32; b * lq * hq * d];
    let mut scores = vec![0.0f64; lk];
    for bi in 0..b {
        for h in 0..hq {
            let g = h / group;
            for i in 0..lq {
                let qrow = &q[((bi * lq + i) * hq + h) * d..][..d];
                let kv_row = |j: usize| ((bi * lk + j) * hkv + g) * d;
                let attend = |j: usize| {
                    key_bias.is_none_or(|m| m[bi * lk + j] != f32::NEG_INFINITY)
                        && causal.is_none_or(|off| j <= i + off)
                };
                let mut max = f64::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    let krow = &k[kv_row(j)..][..d];
                    *s = qrow
                        .iter()
                        .zip(krow)
                        .map(|(&x, &y)| x as f64 * y as f64)
                        .sum::<f64>()
                        * scale as f64
                        + bias.map_or(0.0, |b| b[(h * lq + i) * lk + j] as f64)
                        + key_bias.map_or(0.0, |m| m[bi * lk + j].max(f32::MIN) as f64);
                    if attend(j) {
                        max = max.max(*s);
                    }
                }
                let mut sum = 0.0;
                let mut acc = vec![0.0f64; d];
                for (j, &s) in scores.iter().enumerate().filter(|&(j, _)| attend(j)) {
                    let p = (s - max).exp();
                    sum += p;
                    for (a, &x) in acc.iter_mut().zip(&v[kv_row(j)..][..d]) {
                        *a += p * x as f64;
                    }
                }
                let o = &mut out[((bi * lq + i) * hq + h) * d..][..d];
                if sum > 0.0 {
                    for (o, a) in o.iter_mut().zip(&acc) {
                        *o = (a / sum) as f32;
                    }
                }
            }
        }
    }
    out
}
