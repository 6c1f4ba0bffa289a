use ras::kernels::rope::{self, RopePairs};
use ras::reference::rope as reference;

use crate::common::{check, gpu, randn, rng};

/// Real RoPE tables: angle t · 10000^(−2j/D).
fn tables(l: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let angle = |i: usize| {
        let (t, j) = (i / (d / 2), i % (d / 2));
        t as f64 * 10000f64.powf(-2.0 * j as f64 / d as f64)
    };
    let n = l * d / 2;
    (
        (0..n).map(|i| angle(i).cos() as f32).collect(),
        (0..n).map(|i| angle(i).sin() as f32).collect(),
    )
}

#[test]
fn rope_matches_reference() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    for (b, l, h, d) in [(2, 37, 3, 72), (1, 5, 2, 16), (3, 7, 2, 12)] {
        let x = randn(&mut rng, b * l * h * d);
        let (cos, sin) = tables(l, d);
        let xt = gpu.upload_f32(&x, &[b, l, h, d]).unwrap();
        let ct = gpu.upload_f32(&cos, &[l, d / 2]).unwrap();
        let st = gpu.upload_f32(&sin, &[l, d / 2]).unwrap();
        let out = rope::rope(&gpu, &xt, &ct, &st).unwrap();
        assert_eq!(out.shape(), [b, l, h, d]);
        let want = reference::rope(&x, &cos, &sin, l, h, d);
        check(
            &format!("rope {:?}", [b, l, h, d]),
            &gpu.read_f32(&out).unwrap(),
            &want,
            1e-5,
            seed,
        );
    }
}

/// One table per batch row: each row's tokens take positions of their own
/// (a RAS step's active tokens differ per row).
#[test]
fn rope_per_batch_row_tables_match_reference() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    for (b, l, h, d) in [(3, 11, 2, 72), (2, 5, 4, 12)] {
        let x = randn(&mut rng, b * l * h * d);
        // Random angles, so that no row's table equals another's.
        let angles = randn(&mut rng, b * l * d / 2);
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let xt = gpu.upload_f32(&x, &[b, l, h, d]).unwrap();
        let ct = gpu.upload_f32(&cos, &[b, l, d / 2]).unwrap();
        let st = gpu.upload_f32(&sin, &[b, l, d / 2]).unwrap();
        let out = rope::rope(&gpu, &xt, &ct, &st).unwrap();
        let want = reference::rope(&x, &cos, &sin, b * l, h, d);
        check(
            &format!("rope per row {:?}", [b, l, h, d]),
            &gpu.read_f32(&out).unwrap(),
            &want,
            1e-5,
            seed,
        );
    }
}

/// Both pair layouts, at Gemma's head dim 256 with one kv head and a
/// Lumina-like odd token count.
#[test]
fn rope_pair_layouts_match_reference() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    for layout in [RopePairs::Interleaved, RopePairs::Halves] {
        for (b, l, h, d) in [(2, 13, 1, 256), (3, 7, 5, 12)] {
            let x = randn(&mut rng, b * l * h * d);
            let (cos, sin) = tables(l, d);
            let xt = gpu.upload_f32(&x, &[b, l, h, d]).unwrap();
            let ct = gpu.upload_f32(&cos, &[l, d / 2]).unwrap();
            let st = gpu.upload_f32(&sin, &[l, d / 2]).unwrap();
            let out = rope::rope_pairs(&gpu, &xt, &ct, &st, layout).unwrap();
            let want = reference::rope_pairs(&x, &cos, &sin, l, h, d, layout);
            check(
                &format!("rope {layout:?} {:?}", [b, l, h, d]),
                &gpu.read_f32(&out).unwrap(),
                &want,
                1e-5,
                seed,
            );
        }
    }
}

/// The halves layout is transformers' `q·cos + rotate_half(q)·sin` with the
/// angles repeated over both halves, written out independently here.
#[test]
fn rope_halves_is_rotate_half() {
    let (mut rng, _) = rng();
    let (l, h, d) = (6, 2, 8);
    let x = randn(&mut rng, l * h * d);
    let (cos, sin) = tables(l, d);
    let got = reference::rope_pairs(&x, &cos, &sin, l, h, d, RopePairs::Halves);
    for (row, (xs, gs)) in x.chunks(d).zip(got.chunks(d)).enumerate() {
        let t = row / h;
        for e in 0..d {
            let (c, s) = (cos[t * d / 2 + e % (d / 2)], sin[t * d / 2 + e % (d / 2)]);
            let rotated = if e < d / 2 { -xs[e + d / 2] } else { xs[e - d / 2] };
            let want = xs[e] * c + rotated * s;
            assert!(
                (gs[e] - want).abs() < 1e-5,
                "row {row} dim {e}: {} vs {want}",
                gs[e]
            );
        }
    }
}

#[test]
fn rope_rejects_bad_shapes() {
    let gpu = gpu();
    let zeros = |shape: &[usize]| gpu.upload_f32(&vec![0.0; shape.iter().product()], shape).unwrap();
    let x = zeros(&[1, 5, 2, 16]);
    let table = zeros(&[5, 8]);
    let e = rope::rope(&gpu, &x, &zeros(&[5, 16]), &table)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "cos table must be [len, head_dim / 2] = [5, 8] or [batch, len, head_dim / 2] = [1, 5, 8], \
             got [5, 16]"
        ),
        "{e}"
    );
    let e = rope::rope(&gpu, &x, &table, &zeros(&[4, 8]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sin table must be [len, head_dim / 2] = [5, 8] or") && e.contains("got [4, 8]"),
        "{e}"
    );
    let e = rope::rope(&gpu, &x, &zeros(&[1, 5, 8]), &table)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cos [1, 5, 8] and sin [5, 8] tables differ"), "{e}");
    let e = rope::rope(&gpu, &zeros(&[1, 5, 2, 15]), &table, &table)
        .unwrap_err()
        .to_string();
    assert!(e.contains("head dim 15 is odd"), "{e}");
    let e = rope::rope(&gpu, &zeros(&[5, 2, 16]), &table, &table)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x must be [batch, len, heads, head_dim], got [5, 2, 16]"),
        "{e}"
    );
}

/// f16 activations in and out; the rotation in f32.
#[test]
fn rope_f16_activations() {
    use ras::gpu::DType;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (b, l, h, d) = (2, 19, 3, 72);
    let hx: Vec<half::f16> = randn(&mut rng, b * l * h * d)
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let x: Vec<f32> = hx.iter().map(|v| v.to_f32()).collect();
    let (cos, sin) = tables(l, d);
    let xt = gpu
        .upload_weight(bytemuck::cast_slice(&hx), &[b, l, h, d], DType::F16)
        .unwrap();
    let ct = gpu.upload_f32(&cos, &[l, d / 2]).unwrap();
    let st = gpu.upload_f32(&sin, &[l, d / 2]).unwrap();
    let out = rope::rope(&gpu, &xt, &ct, &st).unwrap();
    assert_eq!(out.dtype(), DType::F16);
    let want = reference::rope(&x, &cos, &sin, l, h, d);
    check("rope f16", &gpu.read_f32(&out).unwrap(), &want, 1e-3, seed);
}
