use ras::gpu::DType;
use ras::kernels::finite::{check_finite, new_flag, CLEAN};

use crate::common::{gpu, randn, rng};

/// The flag keeps the smallest code of the checks that saw a NaN or an
/// infinity (f32 and f16 inputs, either anywhere in a tensor whose size is
/// not a multiple of the workgroup), and stays clean on finite values,
/// huge ones included.
#[test]
fn finite_check_names_the_first_bad_code() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let n = 1000;
    let mut clean = randn(&mut rng, n);
    clean[17] = f32::MAX;
    clean[18] = f32::MIN_POSITIVE / 4.0;
    let mut nan = clean.clone();
    nan[999] = f32::NAN;
    let mut inf = clean.clone();
    inf[0] = f32::NEG_INFINITY;
    let flag = new_flag(&gpu).unwrap();
    for (code, values) in [(9, &clean), (7, &nan), (5, &clean), (8, &inf)] {
        let t = gpu.upload_f32(values, &[n]).unwrap();
        check_finite(&gpu, &t, &flag, code).unwrap();
    }
    assert_eq!(gpu.read_u32(&flag).unwrap(), [7], "seed {seed}");
    let flag = new_flag(&gpu).unwrap();
    check_finite(&gpu, &gpu.upload_f32(&clean, &[n]).unwrap(), &flag, 3).unwrap();
    assert_eq!(gpu.read_u32(&flag).unwrap(), [CLEAN], "seed {seed}");
    if gpu.capabilities().shader_f16 {
        // f16: 70000 overflows to an infinity when rounded; 60000 does not.
        for (value, want) in [(60000.0f32, CLEAN), (70000.0, 4)] {
            // (clean[17] = f32::MAX would itself round to an f16 infinity.)
            let mut v: Vec<half::f16> = clean
                .iter()
                .map(|&x| half::f16::from_f32(x.clamp(-1e4, 1e4)))
                .collect();
            v[500] = half::f16::from_f32(value);
            let t = gpu
                .upload_weight(bytemuck::cast_slice(&v), &[n], DType::F16)
                .unwrap();
            let flag = new_flag(&gpu).unwrap();
            check_finite(&gpu, &t, &flag, 4).unwrap();
            assert_eq!(gpu.read_u32(&flag).unwrap(), [want], "f16 {value} (seed {seed})");
        }
    }
}
