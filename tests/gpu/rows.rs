use rand::seq::SliceRandom;
use ras::gpu::{DType, Gpu, GpuOptions};
use ras::kernels::rows::{gather, scatter, Indices};
use ras::reference::rows as reference;

use crate::common::{check, gpu, randn, rng};

#[test]
fn gather_then_scatter_is_identity_on_gathered_rows() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (rows, d) = (131, 45);
    let x = randn(&mut rng, rows * d);
    let xt = gpu.upload_f32(&x, &[rows, d]).unwrap();
    let mut order: Vec<u32> = (0..rows as u32).collect();
    order.shuffle(&mut rng);
    let picked = &order[..67];
    let idx = Indices::upload(&gpu, picked).unwrap();
    let g = gather(&gpu, &xt, &idx).unwrap();
    let got = gpu.read_f32(&g).unwrap();
    check("gather", &got, &reference::gather(&x, d, picked), 1e-7, seed);
    // Scatter into a different tensor: picked rows must equal the source,
    // the others must keep the destination's own values.
    let y = randn(&mut rng, rows * d);
    let yt = gpu.upload_f32(&y, &[rows, d]).unwrap();
    scatter(&gpu, &g, &idx, &yt).unwrap();
    let mut want = y.clone();
    reference::scatter(&got, d, picked, &mut want);
    let out = gpu.read_f32(&yt).unwrap();
    assert_eq!(out, want, "scatter changed rows it should not have (seed {seed})");
    for &r in picked {
        let r = r as usize;
        assert_eq!(out[r * d..(r + 1) * d], x[r * d..(r + 1) * d]);
    }
}

#[test]
fn gather_from_split_16bit_table() {
    let _serial = gpu();
    let small = Gpu::new(&GpuOptions {
        poison: true,
        max_binding_bytes: Some(2 << 10),
        ..Default::default()
    })
    .unwrap();
    let (mut rng, seed) = rng();
    let (rows, d) = (100, 21);
    let table = randn(&mut rng, rows * d);
    let bytes: Vec<u8> = table
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let t = small.upload_weight(&bytes, &[rows, d], DType::BF16).unwrap();
    assert!(t.num_chunks() > 2);
    let picked: Vec<u32> = (0..20).map(|i| (i * 37 % rows) as u32).collect();
    let idx = Indices::upload(&small, &picked).unwrap();
    let out = small.read_f32(&gather(&small, &t, &idx).unwrap()).unwrap();
    let rounded: Vec<f32> = table.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
    check(
        "gather split bf16",
        &out,
        &reference::gather(&rounded, d, &picked),
        1e-7,
        seed,
    );
}

#[test]
fn index_out_of_range_is_an_error() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[0.0; 12], &[4, 3]).unwrap();
    let idx = Indices::upload(&gpu, &[0, 4]).unwrap();
    let err = gather(&gpu, &x, &idx).unwrap_err().to_string();
    assert!(err.contains("index 4 out of range for 4 rows"), "{err}");
    let src = gpu.upload_f32(&[0.0; 6], &[2, 3]).unwrap();
    let err = scatter(&gpu, &src, &idx, &x).unwrap_err().to_string();
    assert!(err.contains("index 4 out of range"), "{err}");
}

#[test]
fn gather_from_a_reshaped_view() {
    let gpu = gpu();
    // [2, 3, 4] seen as [6, 4]: rows beyond the original first dimension.
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let t = gpu.upload_f32(&x, &[2, 3, 4]).unwrap().reshape(&[6, 4]).unwrap();
    let idx = Indices::upload(&gpu, &[5, 0, 3]).unwrap();
    let out = gpu.read_f32(&gather(&gpu, &t, &idx).unwrap()).unwrap();
    assert_eq!(out, reference::gather(&x, 4, &[5, 0, 3]));
}

/// Scattering f32 rows into an f16 tensor (a half-precision K/V cache)
/// rounds them to f16 and leaves the other rows alone.
#[test]
fn scatter_into_f16() {
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (rows, d) = (41, 37);
    let before: Vec<half::f16> = randn(&mut rng, rows * d)
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let dst = gpu
        .upload_weight(bytemuck::cast_slice(&before), &[rows, d], DType::F16)
        .unwrap();
    let src = randn(&mut rng, 5 * d);
    let picked = [40u32, 3, 17, 0, 22];
    let st = gpu.upload_f32(&src, &[5, d]).unwrap();
    scatter(&gpu, &st, &Indices::upload(&gpu, &picked).unwrap(), &dst).unwrap();
    let mut want: Vec<f32> = before.iter().map(|v| v.to_f32()).collect();
    let rounded: Vec<f32> = src.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    reference::scatter(&rounded, d, &picked, &mut want);
    let got = gpu.read_f32(&dst).unwrap();
    assert_eq!(got, want, "scatter into f16 (seed {seed})");
}

/// scatter_columns writes picked rows into a column range of a wider
/// tensor (keys into the first half of a fused K|V row), nothing else.
#[test]
fn scatter_into_columns() {
    use ras::kernels::rows::scatter_columns;
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let (rows, wide, d, col) = (19, 30, 11, 7);
    let before = randn(&mut rng, rows * wide);
    let dst = gpu.upload_f32(&before, &[rows, wide]).unwrap();
    let src = randn(&mut rng, 4 * d);
    let picked = [18u32, 0, 5, 9];
    let st = gpu.upload_f32(&src, &[4, d]).unwrap();
    scatter_columns(&gpu, &st, &Indices::upload(&gpu, &picked).unwrap(), &dst, col).unwrap();
    let mut want = before.clone();
    for (i, &r) in picked.iter().enumerate() {
        want[r as usize * wide + col..][..d].copy_from_slice(&src[i * d..][..d]);
    }
    assert_eq!(
        gpu.read_f32(&dst).unwrap(),
        want,
        "scatter into columns (seed {seed})"
    );
    let err = scatter_columns(
        &gpu,
        &st,
        &Indices::upload(&gpu, &picked).unwrap(),
        &dst,
        wide - d + 1,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("columns of dst"), "{err}");
}

/// convert f32 ↔ f16, gather into f16 and scatter f16 rows: each value
/// rounded once.
#[test]
fn f16_convert_gather_scatter() {
    use ras::kernels::rows::{convert, gather_as};
    let gpu = gpu();
    if !gpu.capabilities().shader_f16 {
        assert!(std::env::var("CI").is_err(), "CI's adapter has shader-f16");
        return;
    }
    let (mut rng, seed) = rng();
    let (rows, d) = (23, 13);
    let x = randn(&mut rng, rows * d);
    let rounded: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let xt = gpu.upload_f32(&x, &[rows, d]).unwrap();
    let h = convert(&gpu, &xt, DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(gpu.read_f32(&h).unwrap(), rounded, "convert to f16 (seed {seed})");
    let back = convert(&gpu, &h, DType::F32).unwrap();
    assert_eq!(
        gpu.read_f32(&back).unwrap(),
        rounded,
        "convert back (seed {seed})"
    );
    let picked = [22u32, 4, 4, 0, 9];
    let idx = Indices::upload(&gpu, &picked).unwrap();
    let g = gather_as(&gpu, &xt, &idx, DType::F16).unwrap();
    assert_eq!(
        gpu.read_f32(&g).unwrap(),
        reference::gather(&rounded, d, &picked),
        "gather into f16 (seed {seed})"
    );
    let dst = gpu.upload_f32(&vec![0.0; rows * d], &[rows, d]).unwrap();
    let distinct = Indices::upload(&gpu, &[22, 4, 0, 9]).unwrap();
    let src = gather_as(&gpu, &xt, &distinct, DType::F16).unwrap();
    scatter(&gpu, &src, &distinct, &dst).unwrap();
    let mut want = vec![0.0; rows * d];
    reference::scatter(
        &reference::gather(&rounded, d, &[22, 4, 0, 9]),
        d,
        &[22, 4, 0, 9],
        &mut want,
    );
    assert_eq!(
        gpu.read_f32(&dst).unwrap(),
        want,
        "scatter f16 rows (seed {seed})"
    );
}
