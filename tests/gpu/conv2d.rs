use half::{bf16, f16};
use rand::rngs::SmallRng;
use ras::gpu::{DType, Gpu, Tensor};
use ras::kernels::conv2d::conv2d;
use ras::reference::conv2d::{self as reference, Conv2dShape};

use crate::common::{check, gpu, randn, rng};

/// A weight or bias in `dtype`, rounded from `data` on upload.
fn upload(gpu: &Gpu, data: &[f32], shape: &[usize], dtype: DType) -> Tensor {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(data).to_vec(),
        DType::F16 => data
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::BF16 => data
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        DType::U32 => unreachable!("weights are floating point"),
    };
    gpu.upload_weight(&bytes, shape, dtype).unwrap()
}

/// Runs one convolution on the GPU and checks it against the f64 reference
/// computed from the unrounded f32 weights, so 16-bit cases also measure
/// the weight rounding.
fn case(
    gpu: &Gpu,
    (rng, seed): (&mut SmallRng, u64),
    s: Conv2dShape,
    dtype: DType,
    with_bias: bool,
    tol: f64,
) {
    let x = randn(rng, s.batch * s.cin * s.h * s.w);
    let weight = randn(rng, s.cout * s.cin * s.kh * s.kw);
    let bias = randn(rng, s.cout);
    let xt = gpu.upload_f32(&x, &[s.batch, s.cin, s.h, s.w]).unwrap();
    let wt = upload(gpu, &weight, &[s.cout, s.cin, s.kh, s.kw], dtype);
    let bt = upload(gpu, &bias, &[s.cout], dtype);
    let out = conv2d(gpu, &xt, &wt, with_bias.then_some(&bt), s.stride, s.padding).unwrap();
    assert_eq!(out.shape(), [s.batch, s.cout, s.out_h(), s.out_w()]);
    let want = reference::conv2d(&s, &x, &weight, with_bias.then_some(&bias[..]));
    let what = format!(
        "conv2d {}x{} s{} p{} {}→{} {}x{} {} bias={with_bias}",
        s.kh,
        s.kw,
        s.stride,
        s.padding,
        s.cin,
        s.cout,
        s.h,
        s.w,
        dtype.name()
    );
    check(&what, &gpu.read_f32(&out).unwrap(), &want, tol, seed);
}

/// Sizes as `(batch, cin, cout, (h, w), (kh, kw), stride, padding)`.
fn shape(
    batch: usize,
    cin: usize,
    cout: usize,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    stride: usize,
    padding: usize,
) -> Conv2dShape {
    Conv2dShape {
        batch,
        cin,
        cout,
        h,
        w,
        kh,
        kw,
        stride,
        padding,
    }
}

#[test]
fn conv3x3_pad1_f32() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    // 7 output channels leave the single channel block ragged.
    let s = shape(2, 5, 7, (13, 11), (3, 3), 1, 1);
    for with_bias in [false, true] {
        case(&gpu, (&mut rng, seed), s, DType::F32, with_bias, 1e-5);
    }
}

#[test]
fn patchify_k2_s2_f32() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let s = shape(2, 16, 24, (10, 14), (2, 2), 2, 0);
    for with_bias in [false, true] {
        case(&gpu, (&mut rng, seed), s, DType::F32, with_bias, 1e-5);
    }
}

#[test]
fn pointwise_1x1_f32() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let s = shape(1, 9, 17, (7, 19), (1, 1), 1, 0);
    for with_bias in [false, true] {
        case(&gpu, (&mut rng, seed), s, DType::F32, with_bias, 1e-5);
    }
}

#[test]
fn many_tiles_and_general_kernels() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let cases = [
        // 33 rows × 12 pixel groups: several 64-invocation tiles, 3 channel blocks.
        shape(1, 3, 20, (33, 47), (3, 3), 1, 1),
        // The VAE encoder's downsampling shape, odd input.
        shape(2, 6, 9, (15, 13), (3, 3), 2, 1),
        // Non-square kernel and padding wider than the kernel's reach.
        shape(1, 4, 5, (6, 9), (1, 3), 1, 2),
        shape(1, 2, 3, (8, 5), (4, 2), 3, 1),
        // A long reduction: 576 terms per output.
        shape(1, 64, 16, (12, 10), (3, 3), 1, 1),
        // An 8×8 patchify: the widest input window the shader holds (64).
        shape(1, 3, 4, (19, 21), (8, 8), 8, 0),
    ];
    for s in cases {
        case(&gpu, (&mut rng, seed), s, DType::F32, true, 1e-5);
    }
}

#[test]
fn half_precision_weights() {
    let gpu = gpu();
    let (mut rng, seed) = rng();
    let cases = [
        // 315 weights: an odd count ends in a half-filled word.
        shape(2, 5, 7, (13, 11), (3, 3), 1, 1),
        shape(2, 16, 24, (10, 14), (2, 2), 2, 0),
        shape(1, 9, 17, (7, 19), (1, 1), 1, 0),
    ];
    for s in cases {
        for dtype in [DType::F16, DType::BF16] {
            for with_bias in [false, true] {
                case(&gpu, (&mut rng, seed), s, dtype, with_bias, 1e-2);
            }
        }
    }
}

#[test]
fn rejects_bad_shapes() {
    let gpu = gpu();
    let x = gpu.upload_f32(&[0.0; 2 * 5 * 4 * 4], &[2, 5, 4, 4]).unwrap();
    let w = |shape: &[usize]| {
        let n = shape.iter().product();
        gpu.upload_weight_f32(&vec![0.0; n], shape).unwrap()
    };
    let err = |r: ras::Result<Tensor>| r.unwrap_err().to_string();

    let e = err(conv2d(&gpu, &x, &w(&[3, 4, 3, 3]), None, 1, 1));
    assert!(
        e.contains("expects 4 input channels but the input [2, 5, 4, 4] has 5"),
        "{e}"
    );
    let e = err(conv2d(&gpu, &x, &w(&[3, 5, 3, 3]), Some(&w(&[4])), 1, 1));
    assert!(e.contains("bias must be [3]"), "{e}");
    let e = err(conv2d(&gpu, &x, &w(&[3, 5, 5, 5]), None, 1, 0));
    assert!(
        e.contains("kernel height 5 exceeds the padded input height 4"),
        "{e}"
    );
    let e = err(conv2d(&gpu, &x, &w(&[3, 5, 3, 3]), None, 0, 1));
    assert!(e.contains("stride must be at least 1"), "{e}");
    let e = err(conv2d(&gpu, &x, &w(&[3, 5, 9]), None, 1, 1));
    assert!(e.contains("weight must have 4 dimensions"), "{e}");
    let e = err(conv2d(&gpu, &x, &w(&[3, 5, 1, 9]), None, 8, 4));
    assert!(e.contains("needs an input window of 65"), "{e}");
    let flat = x.reshape(&[10, 16]).unwrap();
    let e = err(conv2d(&gpu, &flat, &w(&[3, 5, 3, 3]), None, 1, 1));
    assert!(e.contains("input must have 4 dimensions"), "{e}");
}
