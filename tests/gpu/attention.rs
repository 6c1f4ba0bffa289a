use rand::rngs::SmallRng;
use rand::Rng;
use ras::gpu::{Gpu, Tensor};
use ras::kernels::attention::{self, AttentionOptions, HeadsView};
use ras::reference::attention::{self as reference, Dims, Options};

use ras::kernels::variant::runnable;

use crate::common::{check, gpu, randn, rng};

fn dims(b: usize, lq: usize, lk: usize, hq: usize, hkv: usize, d: usize) -> Dims {
    Dims {
        b,
        lq,
        lk,
        hq,
        hkv,
        d,
    }
}

/// Runs one attention on fresh inputs (Q scaled by `q_gain` to sharpen the
/// softmax) and checks it against the reference; returns the output.
fn run(gpu: &Gpu, rng: &mut SmallRng, seed: u64, n: Dims, mask: Option<&[f32]>, q_gain: f32) -> Vec<f32> {
    let q: Vec<f32> = randn(rng, n.b * n.lq * n.hq * n.d)
        .iter()
        .map(|x| x * q_gain)
        .collect();
    let k = randn(rng, n.b * n.lk * n.hkv * n.d);
    let v = randn(rng, n.b * n.lk * n.hkv * n.d);
    let scale = 1.0 / (n.d as f32).sqrt();
    let qt = gpu.upload_f32(&q, &[n.b, n.lq, n.hq, n.d]).unwrap();
    let kt = gpu.upload_f32(&k, &[n.b, n.lk, n.hkv, n.d]).unwrap();
    let vt = gpu.upload_f32(&v, &[n.b, n.lk, n.hkv, n.d]).unwrap();
    let mt = mask.map(|m| gpu.upload_f32(m, &[n.b, n.lk]).unwrap());
    let want = reference::attention(&q, &k, &v, mask, n, scale);
    let masked = if mask.is_some() { " key bias" } else { "" };
    let mut got = Vec::new();
    for variant in runnable(gpu) {
        let opts = AttentionOptions {
            key_bias: mt.as_ref(),
            ..AttentionOptions::scale(scale)
        };
        let view = |name, t| HeadsView::contiguous(name, t).unwrap();
        let out = attention::attention_views_variant(
            gpu,
            view("q", &qt),
            view("k", &kt),
            view("v", &vt),
            &opts,
            variant,
        )
        .unwrap();
        assert_eq!(out.shape(), [n.b, n.lq, n.hq, n.d]);
        got = gpu.read_f32(&out).unwrap();
        let what = format!("attention {} {n:?} gain {q_gain}{masked}", variant.name());
        check(&what, &got, &want, 1e-4, seed);
    }
    got
}

/// What [`run_with`] applies beyond plain attention.
#[derive(Clone, Copy)]
struct Extras<'a> {
    mask: Option<&'a [f32]>,
    causal: Option<usize>,
    bias: Option<&'a [f32]>,
    scale: Option<f32>,
}

const PLAIN: Extras = Extras {
    mask: None,
    causal: None,
    bias: None,
    scale: None,
};

/// [`run`] with a causal mask, a bias and a scale (1/sqrt(D) when None).
fn run_with(gpu: &Gpu, rng: &mut SmallRng, seed: u64, n: Dims, x: Extras) -> Vec<f32> {
    let q = randn(rng, n.b * n.lq * n.hq * n.d);
    let k = randn(rng, n.b * n.lk * n.hkv * n.d);
    let v = randn(rng, n.b * n.lk * n.hkv * n.d);
    let scale = x.scale.unwrap_or(1.0 / (n.d as f32).sqrt());
    let qt = gpu.upload_f32(&q, &[n.b, n.lq, n.hq, n.d]).unwrap();
    let kt = gpu.upload_f32(&k, &[n.b, n.lk, n.hkv, n.d]).unwrap();
    let vt = gpu.upload_f32(&v, &[n.b, n.lk, n.hkv, n.d]).unwrap();
    let mt = x.mask.map(|m| gpu.upload_f32(m, &[n.b, n.lk]).unwrap());
    let bt = x.bias.map(|b| gpu.upload_f32(b, &[n.hq, n.lq, n.lk]).unwrap());
    let opts = AttentionOptions {
        key_bias: mt.as_ref(),
        causal: x.causal,
        bias: bt.as_ref(),
        scale,
    };
    let out = attention::attention_with(gpu, &qt, &kt, &vt, &opts).unwrap();
    assert_eq!(out.shape(), [n.b, n.lq, n.hq, n.d]);
    let got = gpu.read_f32(&out).unwrap();
    let ref_opts = Options {
        key_bias: x.mask,
        causal: x.causal,
        bias: x.bias,
        scale,
    };
    let want = reference::attention_with(&q, &k, &v, &ref_opts, n);
    let what = format!(
        "attention {n:?} scale {scale} mask {} causal {:?} bias {}",
        x.mask.is_some(),
        x.causal,
        x.bias.is_some()
    );
    check(&what, &got, &want, 1e-4, seed);
    got
}

#[test]
fn attention_matches_reference() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let cases = [
        dims(2, 67, 131, 4, 4, 16),
        dims(1, 45, 45, 3, 3, 64),
        dims(1, 33, 70, 6, 2, 72),
        dims(1, 130, 29, 2, 2, 40),
        dims(1, 9, 300, 2, 1, 128),
        dims(2, 5, 3, 1, 1, 19),
        // Several query blocks per head (workgroups of 32 lanes).
        dims(1, 600, 21, 2, 1, 16),
        // Workgroups of 64 lanes: 250 queries fill one block of 256.
        dims(1, 250, 40, 2, 2, 32),
    ];
    for n in cases {
        run(&gpu, &mut rng, seed, n, None, 1.0);
    }
    // Peaked softmax: scores of tens, where a missing max subtraction or a
    // bad rescale would overflow or lose the small weights.
    run(&gpu, &mut rng, seed, dims(1, 40, 100, 2, 2, 64), None, 8.0);
}

/// A key bias: each key kept with probability `keep`, with a bias in
/// [ln 0.5, ln 300] (weights as for up to 300 identical keys); −∞ otherwise.
fn key_bias(rng: &mut SmallRng, len: usize, keep: f64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            if rng.random_bool(keep) {
                rng.random_range(0.5f32..300.0).ln()
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect()
}

#[test]
fn attention_key_mask() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let n = dims(3, 21, 77, 4, 2, 32);
    let mut mask = key_bias(&mut rng, n.b * n.lk, 0.6);
    // Batch 1: every key masked, so every query of it must give exactly 0.
    mask[n.lk..2 * n.lk].fill(f32::NEG_INFINITY);
    // Batch 2: a single key survives, in a ragged last block.
    mask[2 * n.lk..].fill(f32::NEG_INFINITY);
    mask[3 * n.lk - 2] = 0.5;
    let got = run(&gpu, &mut rng, seed, n, Some(&mask), 2.0);
    let per_batch = n.lq * n.hq * n.d;
    assert!(
        got[per_batch..2 * per_batch].iter().all(|&x| x == 0.0),
        "all-masked rows must be 0"
    );
}

#[test]
fn attention_on_fused_qkv_views() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (b, l, h, d) = (2, 37, 3, 24);
    // One [B, L, 3, H, D] projection with two spare elements in front.
    let fused = randn(&mut rng, 2 + b * l * 3 * h * d);
    let ft = gpu.upload_f32(&fused, &[fused.len()]).unwrap();
    let view = |part: usize| HeadsView {
        tensor: &ft,
        batch: b,
        len: l,
        heads: h,
        head_dim: d,
        offset: 2 + part * h * d,
        row_stride: 3 * h * d,
    };
    let split = |part: usize| -> Vec<f32> {
        (0..b * l)
            .flat_map(|t| fused[2 + (t * 3 + part) * h * d..][..h * d].to_vec())
            .collect()
    };
    let scale = 0.3;
    let out = attention::attention_views(&gpu, view(0), view(1), view(2), None, scale).unwrap();
    let want = reference::attention(
        &split(0),
        &split(1),
        &split(2),
        None,
        dims(b, l, l, h, h, d),
        scale,
    );
    check(
        "attention fused qkv",
        &gpu.read_f32(&out).unwrap(),
        &want,
        1e-4,
        seed,
    );
}

fn zeros(gpu: &Gpu, shape: &[usize]) -> Tensor {
    gpu.upload_f32(&vec![0.0; shape.iter().product()], shape).unwrap()
}

#[test]
fn attention_rejects_bad_shapes() {
    let gpu = gpu();
    let q = zeros(&gpu, &[2, 5, 4, 16]);
    let k = zeros(&gpu, &[2, 7, 2, 16]);
    let v = zeros(&gpu, &[2, 7, 2, 16]);
    let err = |q: &Tensor, k: &Tensor, v: &Tensor, m: Option<&Tensor>| {
        attention::attention(&gpu, q, k, v, m, 0.25)
            .unwrap_err()
            .to_string()
    };
    let e = err(&q, &k, &zeros(&gpu, &[2, 6, 2, 16]), None);
    assert!(e.contains("k [2, 7, 2, 16] and v [2, 6, 2, 16] differ"), "{e}");
    let e = err(&zeros(&gpu, &[1, 5, 4, 16]), &k, &v, None);
    assert!(e.contains("q batch 1 but k batch 2"), "{e}");
    let e = err(&zeros(&gpu, &[2, 5, 4, 8]), &k, &v, None);
    assert!(e.contains("q head dim 8 but k head dim 16"), "{e}");
    let e = err(&zeros(&gpu, &[2, 5, 3, 16]), &k, &v, None);
    assert!(
        e.contains("3 query heads are not a multiple of 2 kv heads"),
        "{e}"
    );
    let e = err(&zeros(&gpu, &[2, 5, 16]), &k, &v, None);
    assert!(
        e.contains("q must be [batch, len, heads, head_dim], got [2, 5, 16]"),
        "{e}"
    );
    let with_bias = |bias: &Tensor| {
        let opts = AttentionOptions {
            bias: Some(bias),
            ..AttentionOptions::scale(1.0)
        };
        attention::attention_with(&gpu, &q, &k, &v, &opts)
            .unwrap_err()
            .to_string()
    };
    let e = with_bias(&zeros(&gpu, &[4, 7, 5]));
    assert!(
        e.contains("bias must be [query heads or 1, queries, keys] = [4, 5, 7], got [4, 7, 5]"),
        "{e}"
    );
    let e = with_bias(&zeros(&gpu, &[2, 4, 5, 7]));
    assert!(e.contains("got [2, 4, 5, 7]"), "{e}");
    let e = with_bias(&gpu.upload_u32(&[0; 140], &[4, 5, 7]).unwrap());
    assert!(e.contains("unsupported dtype u32"), "{e}");
    let e = err(&q, &k, &v, Some(&zeros(&gpu, &[2, 7, 1])));
    assert!(
        e.contains("key bias must be [batch, keys] = [2, 7], got [2, 7, 1]"),
        "{e}"
    );
    let e = err(&q, &k, &v, Some(&gpu.upload_u32(&[1; 14], &[2, 7]).unwrap()));
    assert!(e.contains("unsupported dtype u32"), "{e}");
    let e = err(
        &q,
        &zeros(&gpu, &[2, 0, 2, 16]),
        &zeros(&gpu, &[2, 0, 2, 16]),
        None,
    );
    assert!(e.contains("k has an empty dimension"), "{e}");
    let flat = zeros(&gpu, &[100]);
    let view = HeadsView {
        tensor: &flat,
        batch: 1,
        len: 4,
        heads: 1,
        head_dim: 8,
        offset: 80,
        row_stride: 8,
    };
    let e = attention::attention_views(&gpu, view, view, view, None, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("reaches element 112 of a tensor of 100"), "{e}");
}

#[test]
fn attention_causal() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // CLIP's text encoder: 77 tokens, 12 heads of 64.
    let clip = Extras {
        causal: Some(0),
        ..PLAIN
    };
    run_with(&gpu, &mut rng, seed, dims(1, 77, 77, 12, 12, 64), clip);
    // Queries the last of the keys (offset Lk - Lq, e.g. with a cache), and
    // more queries than one block of 256 so the key limit differs between
    // the 4 queries of an invocation.
    for (n, off) in [
        (dims(2, 21, 50, 4, 2, 32), 29),
        (dims(1, 300, 310, 2, 2, 16), 10),
        (dims(1, 40, 19, 2, 1, 24), 3),
        // Offset past the keys: plain attention.
        (dims(1, 9, 13, 1, 1, 8), 1000),
    ] {
        let x = Extras {
            causal: Some(off),
            ..PLAIN
        };
        run_with(&gpu, &mut rng, seed, n, x);
    }
}

#[test]
fn attention_causal_with_key_mask() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let n = dims(2, 30, 30, 3, 3, 16);
    let mut mask = key_bias(&mut rng, n.b * n.lk, 0.7);
    // Batch 1: keys 0..5 masked, so its queries 0..5 see no key at all.
    mask[n.lk..n.lk + 5].fill(f32::NEG_INFINITY);
    let x = Extras {
        mask: Some(&mask),
        causal: Some(0),
        ..PLAIN
    };
    let got = run_with(&gpu, &mut rng, seed, n, x);
    let row = n.hq * n.d;
    let batch1 = &got[n.lq * row..];
    assert!(
        batch1[..5 * row].iter().all(|&v| v == 0.0),
        "queries with every key masked must be 0"
    );
}

#[test]
fn attention_bias() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // T5: scale 1 and a relative position bias.
    for n in [dims(2, 37, 37, 4, 4, 16), dims(1, 20, 45, 4, 2, 16)] {
        let bias: Vec<f32> = randn(&mut rng, n.hq * n.lq * n.lk)
            .iter()
            .map(|x| 3.0 * x)
            .collect();
        let x = Extras {
            bias: Some(&bias),
            scale: Some(1.0),
            ..PLAIN
        };
        run_with(&gpu, &mut rng, seed, n, x);
        // Everything at once.
        let mask = key_bias(&mut rng, n.b * n.lk, 0.8);
        let x = Extras {
            mask: Some(&mask),
            causal: Some(n.lk - n.lq.min(n.lk)),
            ..x
        };
        run_with(&gpu, &mut rng, seed, n, x);
    }
}

#[test]
fn attention_big_head_dims() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // The SD3 VAE's mid-block: one head of 512 channels (scores from the
    // linear kernel, softmax by the attention kernel over 4 slices of V).
    run(&gpu, &mut rng, seed, dims(1, 70, 70, 1, 1, 512), None, 1.0);
    run(&gpu, &mut rng, seed, dims(1, 45, 70, 1, 1, 512), None, 1.0);
    run(&gpu, &mut rng, seed, dims(1, 70, 33, 1, 1, 512), None, 1.0);
    // Batch 2, a width split in two 100-wide slices, one split in 131 (prime).
    run(&gpu, &mut rng, seed, dims(2, 30, 41, 1, 1, 200), None, 1.0);
    run(&gpu, &mut rng, seed, dims(1, 9, 12, 1, 1, 131), None, 1.0);
    // An additive bias is not supported with wide heads: a clear error.
    let q = gpu.upload_f32(&vec![0.0; 2 * 5 * 200], &[1, 5, 2, 200]).unwrap();
    let bias = gpu.upload_f32(&[0.0; 2 * 25], &[2, 5, 5]).unwrap();
    let opts = AttentionOptions {
        bias: Some(&bias),
        ..AttentionOptions::scale(1.0)
    };
    let err = attention::attention_with(&gpu, &q, &q, &q, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("without an additive bias only"), "{err}");
}

/// Gemma-2B's self-attention: 8 query heads of 256 sharing one kv head,
/// causal, with left padding (batch row 1 starts with 5 pad keys, so its
/// first 5 queries see no key at all and must come out 0, not NaN).
#[test]
fn attention_wide_heads_grouped_causal_masked() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let n = dims(2, 19, 19, 8, 1, 256);
    let mut mask = vec![0.0f32; n.b * n.lk];
    mask[n.lk..n.lk + 5].fill(f32::NEG_INFINITY);
    let x = Extras {
        mask: Some(&mask),
        causal: Some(0),
        ..PLAIN
    };
    let got = run_with(&gpu, &mut rng, seed, n, x);
    let row = n.hq * n.d;
    assert!(
        got[n.lq * row..][..5 * row].iter().all(|&v| v == 0.0),
        "queries with every key masked must be 0"
    );
    // Several wide kv heads, a key bias with weights, queries ≠ keys, and
    // heads split in two 80-wide slices.
    let n = dims(2, 7, 11, 4, 2, 160);
    let mask = key_bias(&mut rng, n.b * n.lk, 0.7);
    let x = Extras {
        mask: Some(&mask),
        ..PLAIN
    };
    run_with(&gpu, &mut rng, seed, n, x);
    run_with(
        &gpu,
        &mut rng,
        seed,
        dims(1, 12, 12, 3, 3, 136),
        Extras {
            causal: Some(0),
            ..PLAIN
        },
    );
}

/// K and V stored as f16 (a half-precision K/V cache): equal to the f32
/// reference on the f16-rounded values, in aligned and unaligned views.
#[test]
fn attention_f16_keys_and_values() {
    use ras::gpu::DType;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let half = |x: &[f32]| -> (Vec<u8>, Vec<f32>) {
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        (
            bytemuck::cast_slice(&h).to_vec(),
            h.iter().map(|v| v.to_f32()).collect(),
        )
    };
    for n in [dims(2, 37, 45, 4, 2, 64), dims(1, 9, 70, 3, 3, 18)] {
        let q = randn(&mut rng, n.b * n.lq * n.hq * n.d);
        let (kb, k) = half(&randn(&mut rng, n.b * n.lk * n.hkv * n.d));
        let (vb, v) = half(&randn(&mut rng, n.b * n.lk * n.hkv * n.d));
        let shape = [n.b, n.lk, n.hkv, n.d];
        let qt = gpu.upload_f32(&q, &[n.b, n.lq, n.hq, n.d]).unwrap();
        let kt = gpu.upload_weight(&kb, &shape, DType::F16).unwrap();
        let vt = gpu.upload_weight(&vb, &shape, DType::F16).unwrap();
        let scale = 1.0 / (n.d as f32).sqrt();
        let out = attention::attention(&gpu, &qt, &kt, &vt, None, scale).unwrap();
        let want = reference::attention(&q, &k, &v, None, n, scale);
        check(
            &format!("attention f16 K/V {n:?}"),
            &gpu.read_f32(&out).unwrap(),
            &want,
            1e-5,
            seed,
        );
        // Mixed key and value types are refused.
        let vf = gpu.upload_f32(&v, &shape).unwrap();
        let err = attention::attention(&gpu, &qt, &kt, &vf, None, scale)
            .unwrap_err()
            .to_string();
        assert!(err.contains("keys are f16 but values are not"), "{err}");
    }
}

/// f16 queries and output (as with f16 activations), f16 keys and values:
/// scores, softmax and sums in f32.
#[test]
fn attention_f16_queries_and_output() {
    use ras::gpu::DType;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let n = dims(2, 29, 41, 4, 2, 64);
    let half = |x: &[f32]| -> (Vec<u8>, Vec<f32>) {
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        (
            bytemuck::cast_slice(&h).to_vec(),
            h.iter().map(|v| v.to_f32()).collect(),
        )
    };
    let (qb, q) = half(&randn(&mut rng, n.b * n.lq * n.hq * n.d));
    let (kb, k) = half(&randn(&mut rng, n.b * n.lk * n.hkv * n.d));
    let (vb, v) = half(&randn(&mut rng, n.b * n.lk * n.hkv * n.d));
    let kv_shape = [n.b, n.lk, n.hkv, n.d];
    let qt = gpu
        .upload_weight(&qb, &[n.b, n.lq, n.hq, n.d], DType::F16)
        .unwrap();
    let kt = gpu.upload_weight(&kb, &kv_shape, DType::F16).unwrap();
    let vt = gpu.upload_weight(&vb, &kv_shape, DType::F16).unwrap();
    let scale = 1.0 / (n.d as f32).sqrt();
    let out = attention::attention(&gpu, &qt, &kt, &vt, None, scale).unwrap();
    assert_eq!(out.dtype(), DType::F16);
    let want = reference::attention(&q, &k, &v, None, n, scale);
    check(
        "attention f16 q/k/v/out",
        &gpu.read_f32(&out).unwrap(),
        &want,
        1e-3,
        seed,
    );
}
