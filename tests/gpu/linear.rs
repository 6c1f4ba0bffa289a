use half::{bf16, f16};
use ras::gpu::Variant;
use ras::gpu::{DType, Gpu, GpuOptions, Tensor};
use ras::kernels::linear::{linear, linear_into, linear_into_variant, LinearOptions, Rows};
use ras::kernels::variant::{attention_self_test, choose, runnable, self_test};
use ras::reference;

use crate::common::{check, gpu, randn, rng};

/// `w` as `dtype` bytes and the values those bytes hold.
fn encode(w: &[f32], dtype: DType) -> (Vec<u8>, Vec<f32>) {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(w).to_vec(),
        DType::F16 => w.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => w.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        DType::U32 => unreachable!(),
    };
    let rounded = match dtype {
        DType::F16 => bytes
            .chunks(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => w.to_vec(),
    };
    (bytes, rounded)
}

fn weight(gpu: &Gpu, w: &[f32], shape: &[usize], dtype: DType) -> Tensor {
    gpu.upload_weight(&encode(w, dtype).0, shape, dtype).unwrap()
}

/// Runs linear at `[lead.., k] × [n, k]ᵀ` in every weight dtype, with and
/// without bias. The kernel must match the reference on the weights as
/// stored (1e-5); with K large enough for rounding errors to average out,
/// 16-bit weights must also stay within 1e-2 of the unrounded f32 result.
fn run(gpu: &Gpu, lead: &[usize], n: usize, k: usize) {
    for variant in runnable(gpu) {
        run_variant(gpu, lead, n, k, variant);
    }
}

fn run_variant(gpu: &Gpu, lead: &[usize], n: usize, k: usize, variant: Variant) {
    let (mut rng, seed) = rng();
    let m: usize = lead.iter().product();
    let x = randn(&mut rng, m * k);
    let w = randn(&mut rng, n * k);
    let b = randn(&mut rng, n);
    let shape: Vec<usize> = lead.iter().copied().chain([k]).collect();
    let xt = gpu.upload_f32(&x, &shape).unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let wt = weight(gpu, &w, &[n, k], dtype);
        let bt = weight(gpu, &b, &[n], dtype);
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
        // Cooperative matrices multiply f16-rounded inputs.
        let exact_tol = if variant == Variant::Coopmat { 1e-2 } else { 1e-5 };
        for bias in [None, Some(&bt)] {
            let out = gpu.empty(&[m, n], DType::F32).unwrap();
            linear_into_variant(gpu, &xt, &wt, bias, &out, LinearOptions::default(), variant).unwrap();
            let got = gpu.read_f32(&out).unwrap();
            let what = format!(
                "linear {} {m}x{n}x{k} {} bias={}",
                variant.name(),
                dtype.name(),
                bias.is_some()
            );
            let (wr, br) = (encode(&w, dtype).1, encode(&b, dtype).1);
            let exact = reference::linear::linear(&x, &wr, bias.map(|_| &br[..]), m, n, k);
            // Against the stored weights the only error is f32 summation,
            // bounded by the sums of |x·w| (a handful of terms can cancel to
            // nearly 0, where an error relative to the result is unbounded).
            let abs = |v: &[f32]| v.iter().map(|e| e.abs()).collect::<Vec<_>>();
            let abs_b = abs(&br);
            let scale = reference::linear::linear(&abs(&x), &abs(&wr), bias.map(|_| &abs_b[..]), m, n, k);
            let err = rel_err_to(&got, &exact, &scale);
            eprintln!(
                "{what} (stored weights): error {err:.3e} of the term magnitudes (tol {exact_tol:.0e})"
            );
            assert!(
                err < exact_tol,
                "{what} (stored weights): error {err:.3e} exceeds {exact_tol:.0e} (replay with RAS_TEST_SEED={seed})"
            );
            if k >= 16 {
                let want = reference::linear::linear(&x, &w, bias.map(|_| &b[..]), m, n, k);
                check(&what, &got, &want, tol, seed);
            }
        }
    }
}

#[test]
fn linear_odd_sizes_all_dtypes() {
    let gpu = gpu();
    run(&gpu, &[67], 131, 45);
    run(&gpu, &[2, 33], 7, 64);
    run(&gpu, &[1], 1, 3);
    // Several k steps of the tiled kernels (16 and 32 wide), K off both.
    run(&gpu, &[130], 70, 100);
}

#[test]
fn every_runnable_variant_passes_its_self_test() {
    let gpu = gpu();
    let variants = runnable(&gpu);
    // CI's lavapipe must exercise the tiled kernel at least.
    assert!(variants.contains(&Variant::Tiled), "{variants:?}");
    for v in variants {
        assert_eq!(self_test(&gpu, v).unwrap(), Ok(()), "linear {}", v.name());
        assert_eq!(
            attention_self_test(&gpu, v).unwrap(),
            Ok(()),
            "attention {}",
            v.name()
        );
    }
}

#[test]
fn variant_choice_and_forcing() {
    let gpu = gpu();
    let tiled = choose(&gpu, Some("tiled")).unwrap();
    assert_eq!(tiled.linear.variant, Variant::Tiled);
    assert_eq!(tiled.attention.variant, Variant::Tiled);
    assert!(tiled.linear.reason.contains("RAS_KERNELS"));
    let err = choose(&gpu, Some("fastest")).unwrap_err().to_string();
    assert!(err.contains("use portable, tiled or coopmat"), "{err}");
    if !runnable(&gpu).contains(&Variant::Coopmat) {
        let err = choose(&gpu, Some("coopmat")).unwrap_err().to_string();
        assert!(err.contains("lacks cooperative matrices"), "{err}");
    }
    if gpu.is_software() {
        let auto = choose(&gpu, None).unwrap();
        assert_eq!(auto.linear.variant, Variant::Portable);
        assert_eq!(auto.attention.variant, Variant::Portable);
        assert!(auto.linear.reason.contains("software adapter"));
    }
}

#[test]
fn linear_weight_split_over_binding_limit() {
    let _serial = gpu();
    // A 16 KiB binding cap forces a [100, 90] f32 weight (36 KB) into three
    // buffers and an odd-length f16 one into chunks of even row counts.
    let options = GpuOptions {
        poison: true,
        max_binding_bytes: Some(16 << 10),
        ..Default::default()
    };
    let small = Gpu::new(&options).unwrap();
    let (mut rng, seed) = rng();
    let x = randn(&mut rng, 5 * 90);
    let w = randn(&mut rng, 100 * 90);
    let xt = small.upload_f32(&x, &[5, 90]).unwrap();
    let wt = weight(&small, &w, &[100, 90], DType::F32);
    assert_eq!(wt.num_chunks(), 3);
    let want = reference::linear::linear(&x, &w, None, 5, 100, 90);
    check(
        "split f32",
        &small.read_f32(&linear(&small, &xt, &wt, None).unwrap()).unwrap(),
        &want,
        1e-5,
        seed,
    );
    let x = randn(&mut rng, 3 * 91);
    let w = randn(&mut rng, 200 * 91);
    let xt = small.upload_f32(&x, &[3, 91]).unwrap();
    let wt = weight(&small, &w, &[200, 91], DType::F16);
    assert!(wt.num_chunks() > 1);
    assert!((0..wt.num_chunks()).all(|c| wt.chunk_rows(c).is_multiple_of(2)));
    let want = reference::linear::linear(&x, &w, None, 3, 200, 91);
    check(
        "split f16",
        &small.read_f32(&linear(&small, &xt, &wt, None).unwrap()).unwrap(),
        &want,
        1e-2,
        seed,
    );
}

#[test]
fn linear_rejects_bad_shapes() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[0.0; 12], &[3, 4]).unwrap();
    let w = gpu.upload_weight_f32(&[0.0; 10], &[2, 5]).unwrap();
    let err = linear(&gpu, &x, &w, None).unwrap_err().to_string();
    assert!(
        err.contains("has 4 features but weight [2, 5] expects 5"),
        "{err}"
    );
    let w = gpu.upload_weight_f32(&[0.0; 8], &[2, 4]).unwrap();
    let b = gpu.upload_weight_f32(&[0.0; 3], &[3]).unwrap();
    let err = linear(&gpu, &x, &w, Some(&b)).unwrap_err().to_string();
    assert!(
        err.contains("bias [3] f32 does not match weight [2, 4] f32"),
        "{err}"
    );
}

#[test]
fn tensor_larger_than_device_is_an_error() {
    let gpu = gpu();
    let err = gpu
        .empty(&[1 << 20, 1 << 12], DType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("allows at most"), "{err}");
}

#[test]
fn linear_with_row_indices_gathers_and_scatters() {
    use ras::kernels::rows::Indices;
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (rows, n, k) = (29, 19, 36);
    let x = randn(&mut rng, rows * k);
    let w = randn(&mut rng, n * k);
    let b = randn(&mut rng, n);
    let xt = gpu.upload_f32(&x, &[rows, k]).unwrap();
    let wt = gpu.upload_weight_f32(&w, &[n, k]).unwrap();
    let bt = gpu.upload_weight_f32(&b, &[n]).unwrap();
    // Rows 3, 17, 0, 28, 5 of x go to rows 40, 2, 11, 7, 39 of a 41-row output.
    let (src, dst) = ([3u32, 17, 0, 28, 5], [40u32, 2, 11, 7, 39]);
    let before = randn(&mut rng, 41 * n);
    let out = gpu.upload_f32(&before, &[41, n]).unwrap();
    let (si, di) = (
        Indices::upload(&gpu, &src).unwrap(),
        Indices::upload(&gpu, &dst).unwrap(),
    );
    for variant in runnable(&gpu) {
        linear_into_variant(
            &gpu,
            &xt,
            &wt,
            Some(&bt),
            &out,
            LinearOptions {
                rows: Rows {
                    input: Some(&si),
                    output: Some(&di),
                },
                ..Default::default()
            },
            variant,
        )
        .unwrap();
        let full = reference::linear::linear(&x, &w, Some(&b), rows, n, k);
        let mut want = before.clone();
        for (&s, &d) in src.iter().zip(&dst) {
            want[d as usize * n..(d as usize + 1) * n]
                .copy_from_slice(&full[s as usize * n..(s as usize + 1) * n]);
        }
        let tol = if variant == Variant::Coopmat { 1e-2 } else { 1e-5 };
        check(
            &format!("linear {} with row indices", variant.name()),
            &gpu.read_f32(&out).unwrap(),
            &want,
            tol,
            seed,
        );
    }
    let bad = Indices::upload(&gpu, &[0, 1, 2, 3, 41]).unwrap();
    let err = linear_into(
        &gpu,
        &xt,
        &wt,
        None,
        &out,
        Rows {
            input: Some(&si),
            output: Some(&bad),
        },
    );
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("index 41 out of range for 41 rows"));
}

/// Every epilogue on every runnable variant against the reference linear
/// followed by the separate op it replaces, with gathered input rows and a
/// batch of 3 images (gates per image).
#[test]
fn linear_epilogues_match_the_separate_ops() {
    use ras::kernels::linear::Epilogue;
    use ras::kernels::modulate::Chunk;
    use ras::kernels::rows::Indices;
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (batch, per, n, k, count) = (3, 23, 70, 37, 3);
    let m = batch * per;
    let rows_in = m + 5;
    let x = randn(&mut rng, rows_in * k);
    let w = randn(&mut rng, n * k);
    let b = randn(&mut rng, n);
    let residual = randn(&mut rng, m * n);
    let emb = randn(&mut rng, batch * count * n);
    // Logical row r reads input row (r * 7) % rows_in.
    let src: Vec<u32> = (0..m as u32).map(|r| (r * 7) % rows_in as u32).collect();
    let xt = gpu.upload_f32(&x, &[rows_in, k]).unwrap();
    let wt = gpu.upload_weight_f32(&w, &[n, k]).unwrap();
    let bt = gpu.upload_weight_f32(&b, &[n]).unwrap();
    let rt = gpu.upload_f32(&residual, &[batch, per, n]).unwrap();
    let et = gpu.upload_f32(&emb, &[batch, count * n]).unwrap();
    let si = Indices::upload(&gpu, &src).unwrap();
    let full = reference::linear::linear(&x, &w, Some(&b), rows_in, n, k);
    let y: Vec<f32> = (0..m)
        .flat_map(|r| full[src[r] as usize * n..(src[r] as usize + 1) * n].to_vec())
        .collect();
    let gate = |r: usize, c: usize| emb[(r / per) * count * n + n + c];
    let gelu = |v: f32| {
        let v = v as f64;
        (0.5 * v * (1.0 + (0.7978845608028654 * (v + 0.044715 * v * v * v)).tanh())) as f32
    };
    let silu = |v: f32| v / (1.0 + (-v).exp());
    let cases: Vec<(&str, Epilogue, Vec<f32>)> = vec![
        ("gelu", Epilogue::GeluTanh, y.iter().map(|&v| gelu(v)).collect()),
        (
            "gated residual",
            Epilogue::GatedResidual {
                residual: &rt,
                emb: &et,
                gate: Chunk { index: 1, count },
                tanh: false,
            },
            (0..m * n)
                .map(|i| residual[i] + gate(i / n, i % n) * y[i])
                .collect(),
        ),
        (
            "tanh-gated residual",
            Epilogue::GatedResidual {
                residual: &rt,
                emb: &et,
                gate: Chunk { index: 1, count },
                tanh: true,
            },
            (0..m * n)
                .map(|i| residual[i] + gate(i / n, i % n).tanh() * y[i])
                .collect(),
        ),
        (
            "silu-gated",
            Epilogue::SiluGated { gate: &rt },
            (0..m * n).map(|i| silu(residual[i]) * y[i]).collect(),
        ),
    ];
    for variant in runnable(&gpu) {
        let tol = if variant == Variant::Coopmat { 1e-2 } else { 1e-5 };
        for (name, epilogue, want) in &cases {
            let out = gpu.empty(&[batch, per, n], DType::F32).unwrap();
            let options = LinearOptions {
                rows: Rows {
                    input: Some(&si),
                    output: None,
                },
                epilogue: *epilogue,
                out_col: 0,
            };
            linear_into_variant(&gpu, &xt, &wt, Some(&bt), &out, options, variant).unwrap();
            let got = gpu.read_f32(&out).unwrap();
            check(
                &format!("linear {} + {name}", variant.name()),
                &got,
                want,
                tol,
                seed,
            );
        }
    }
    // A gate tensor that does not fit the output is refused before launch.
    let out = gpu.empty(&[batch, per, n], DType::F32).unwrap();
    let wrong = Epilogue::GatedResidual {
        residual: &rt,
        emb: &xt,
        gate: Chunk { index: 0, count },
        tanh: false,
    };
    let options = LinearOptions {
        rows: Rows {
            input: Some(&si),
            output: None,
        },
        epilogue: wrong,
        out_col: 0,
    };
    let err = linear_into_variant(&gpu, &xt, &wt, None, &out, options, Variant::Portable)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs emb [B, 210]"), "{err}");
}

/// An f16 output (K/V rows written straight into a half-precision cache)
/// on every runnable variant: the f32 result rounded once.
#[test]
fn linear_into_f16_output() {
    use ras::kernels::rows::Indices;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (m, n, k, rows) = (29, 67, 45, 40);
    let x = randn(&mut rng, m * k);
    let w = randn(&mut rng, n * k);
    let b = randn(&mut rng, n);
    let xt = gpu.upload_f32(&x, &[m, k]).unwrap();
    let wt = weight(&gpu, &w, &[n, k], DType::F16);
    let bt = weight(&gpu, &b, &[n], DType::F16);
    let dst: Vec<u32> = (0..m as u32).map(|r| (r * 11 + 3) % rows as u32).collect();
    let di = Indices::upload(&gpu, &dst).unwrap();
    let (wr, br) = (encode(&w, DType::F16).1, encode(&b, DType::F16).1);
    let full = reference::linear::linear(&x, &wr, Some(&br), m, n, k);
    for variant in runnable(&gpu) {
        let out = gpu
            .upload_weight(&vec![0u8; rows * n * 2], &[rows, n], DType::F16)
            .unwrap();
        let options = LinearOptions {
            rows: Rows {
                input: None,
                output: Some(&di),
            },
            ..Default::default()
        };
        linear_into_variant(&gpu, &xt, &wt, Some(&bt), &out, options, variant).unwrap();
        let mut want = vec![0.0; rows * n];
        for (r, &d) in dst.iter().enumerate() {
            want[d as usize * n..][..n].copy_from_slice(&full[r * n..][..n]);
        }
        let tol = if variant == Variant::Coopmat { 1e-2 } else { 1e-3 };
        let what = format!("linear {} into f16", variant.name());
        check(&what, &gpu.read_f32(&out).unwrap(), &want, tol, seed);
    }
}

/// `out_col`: the result lands in columns out_col .. out_col + N of a wider
/// output (V into the second half of a fused K|V row), the other columns
/// untouched, on every runnable variant; a range past the output is refused.
#[test]
fn linear_into_a_column_range() {
    use ras::kernels::rows::Indices;
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (m, n, k, rows, wide) = (21, 38, 29, 30, 80);
    let x = randn(&mut rng, m * k);
    let w = randn(&mut rng, n * k);
    let b = randn(&mut rng, n);
    let xt = gpu.upload_f32(&x, &[m, k]).unwrap();
    let wt = gpu.upload_weight_f32(&w, &[n, k]).unwrap();
    let bt = gpu.upload_weight_f32(&b, &[n]).unwrap();
    let dst: Vec<u32> = (0..m as u32).map(|r| (r * 7 + 2) % rows as u32).collect();
    let di = Indices::upload(&gpu, &dst).unwrap();
    let full = reference::linear::linear(&x, &w, Some(&b), m, n, k);
    let col = 40;
    for variant in runnable(&gpu) {
        let before = randn(&mut rng, rows * wide);
        let out = gpu.upload_f32(&before, &[rows, wide]).unwrap();
        let options = LinearOptions {
            rows: Rows {
                input: None,
                output: Some(&di),
            },
            out_col: col,
            ..Default::default()
        };
        linear_into_variant(&gpu, &xt, &wt, Some(&bt), &out, options, variant).unwrap();
        let mut want = before.clone();
        for (r, &d) in dst.iter().enumerate() {
            want[d as usize * wide + col..][..n].copy_from_slice(&full[r * n..][..n]);
        }
        let tol = if variant == Variant::Coopmat { 1e-2 } else { 1e-5 };
        let what = format!("linear {} into columns {col}..", variant.name());
        check(&what, &gpu.read_f32(&out).unwrap(), &want, tol, seed);
    }
    let out = gpu.empty(&[rows, wide], DType::F32).unwrap();
    let options = LinearOptions {
        rows: Rows {
            input: None,
            output: Some(&di),
        },
        out_col: wide - n + 1,
        ..Default::default()
    };
    let err = linear_into_variant(&gpu, &xt, &wt, None, &out, options, Variant::Portable)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit the output"), "{err}");
}

/// f16 activations in and out (and a gated residual read as f16) on every
/// runnable variant: the f32 reference on the f16-rounded input, rounded.
#[test]
fn linear_f16_activations() {
    use ras::kernels::linear::Epilogue;
    use ras::kernels::modulate::Chunk;
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (m, n, k) = (37, 45, 68);
    let (xb, x) = halves(&randn(&mut rng, m * k));
    let (rb, res) = halves(&randn(&mut rng, m * n));
    let w = randn(&mut rng, n * k);
    let b = randn(&mut rng, n);
    let emb = randn(&mut rng, 2 * n);
    let xt = gpu.upload_weight(&xb, &[m, k], DType::F16).unwrap();
    let rt = gpu.upload_weight(&rb, &[m, n], DType::F16).unwrap();
    let et = gpu.upload_f32(&emb, &[1, 2 * n]).unwrap();
    let wt = gpu.upload_weight_f32(&w, &[n, k]).unwrap();
    let bt = gpu.upload_weight_f32(&b, &[n]).unwrap();
    let y = reference::linear::linear(&x, &w, Some(&b), m, n, k);
    let gated: Vec<f32> = (0..m * n).map(|i| res[i] + emb[n + i % n] * y[i]).collect();
    for variant in runnable(&gpu) {
        let tol = if variant == Variant::Coopmat { 1e-2 } else { 1e-3 };
        let out = linear_variant_to(&gpu, &xt, &wt, &bt, DType::F16, Epilogue::None, variant);
        check(
            &format!("linear {} f16 in, f16 out", variant.name()),
            &out,
            &y,
            tol,
            seed,
        );
        let out = linear_variant_to(&gpu, &xt, &wt, &bt, DType::F32, Epilogue::None, variant);
        check(
            &format!("linear {} f16 in, f32 out", variant.name()),
            &out,
            &y,
            tol,
            seed,
        );
        let epilogue = Epilogue::GatedResidual {
            residual: &rt,
            emb: &et,
            gate: Chunk { index: 1, count: 2 },
            tanh: false,
        };
        let out = linear_variant_to(&gpu, &xt, &wt, &bt, DType::F16, epilogue, variant);
        check(
            &format!("linear {} f16 gated residual", variant.name()),
            &out,
            &gated,
            tol,
            seed,
        );
    }
}

/// `‖got − want‖ / ‖scale‖`.
fn rel_err_to(got: &[f32], want: &[f32], scale: &[f32]) -> f64 {
    if got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - *w as f64).powi(2))
        .sum();
    let den: f64 = scale.iter().map(|v| (*v as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// `v` rounded to f16: its bytes and its values.
fn halves(v: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
    (
        bytemuck::cast_slice(&h).to_vec(),
        h.iter().map(|x| x.to_f32()).collect(),
    )
}

fn linear_variant_to(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    dtype: DType,
    epilogue: ras::kernels::linear::Epilogue,
    variant: Variant,
) -> Vec<f32> {
    let out = gpu.empty(&[x.shape()[0], w.shape()[0]], dtype).unwrap();
    let options = LinearOptions {
        epilogue,
        ..Default::default()
    };
    linear_into_variant(gpu, x, w, Some(b), &out, options, variant).unwrap();
    gpu.read_f32(&out).unwrap()
}
