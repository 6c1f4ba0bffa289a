// Elementwise ops over f32 tensors, one element per invocation.
//
//   out[i] = OP(a[i], b[bi(i)])   with   bi(i) = (i / b_period) * b_stride + i % b_inner
//
// The b index lets b broadcast: same shape (inner = period = n, stride 0), a
// vector over rows ([D]: inner D, period n, stride 0), or one vector per batch
// ([B, D] over [B, N, D]: inner D, period N*D, stride D). Unary ops ignore b.
//
// Bindings: 0 a, 1 b, 2 out, 3 params. Dispatch: ceil(n / 256) workgroups.
// OP: 0 add, 1 mul, 2 affine (a * alpha + beta), 3 gelu (tanh), 4 gelu (erf), 5 silu,
// 6 quick gelu (CLIP-L: x · sigmoid(1.702 x)).

override OP: u32 = 0u;

struct Params {
    n: u32,
    b_inner: u32,
    b_period: u32,
    b_stride: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// erfc with fractional error below 1.2e-7 everywhere (Numerical Recipes,
// "erfcc"), so gelu keeps full f32 accuracy even far in the negative tail.
fn erfc(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-z * z + poly);
    return select(2.0 - r, r, x >= 0.0);
}

fn apply(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x * y; }
        case 2u: { return x * p.alpha + p.beta; }
        case 3u: { return gelu_tanh(x); }
        case 4u: { return 0.5 * x * erfc(-x * 0.7071067811865476); }
        case 5u: { return x / (1.0 + exp(-x)); }
        default: { return x / (1.0 + exp(-1.702 * x)); }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    var y = 0.0;
    if OP <= 1u {
        y = b[(i / p.b_period) * p.b_stride + i % p.b_inner];
    }
    out[i] = apply(a[i], y);
}
