// Row normalisation: LayerNorm, RMSNorm and GroupNorm in one kernel.
//
// Normalises rows of n contiguous elements:
//   LayerNorm  y = (x - mean) / sqrt(var + eps) * weight + bias     (RMS = false)
//   RMSNorm    y = x / sqrt(mean(x²) + eps) * weight                (RMS = true)
// optionally followed by SiLU (SILU = true; the VAE's GroupNorm → SiLU) or
// by adaLN modulation (MODULATE: 1 y·(1 + scale) + shift, 2 y·(1 + scale),
// with the shift and scale chunks of emb[b] for the row's image b =
// row / rows_per_batch), which saves a pass over the normalised rows.
// GroupNorm on NCHW is the same thing: the channels of one group are one
// contiguous row of n = channels_per_group * hw elements. The affine index
// of element `col` of row `row` is (row % groups) * (n / hw) + col / hw,
// which is `col` for LayerNorm (groups = 1, hw = 1).
//
// Two entry points. `main`: a workgroup per row; reductions use a single
// barrier each: every invocation writes its partial sum to workgroup memory
// and then adds up all 64 itself, instead of a log-depth tree (barriers are
// the expensive part on software Vulkan). `per_lane`: one invocation per
// row, no barrier and no workgroup memory; on software Vulkan, where a
// workgroup is a loop over SIMD lanes on one core, that was ~10× faster for
// the DiT's rows of a few hundred (each barrier splits the loop, and the 64
// partial sums cost more loads than the row itself). On a GPU a lane per row
// would leave the rows' reads uncoalesced and most of the device idle, so
// the host takes `per_lane` on software adapters only (kernels/norm.rs).
// Variance is computed around the mean (two passes), not as E[x²] - E[x]².
//
// Bindings: 0 x [rows, n] in ACT_T (f32 or f16; statistics in f32), 1 weight, 2 bias (W_DTYPE words: 0 f32, 1 f16,
// 2 bf16; ignored unless has_weight / has_bias), 3 emb [B, emb_stride] f32
// (read only when modulating), 4 out [rows, n] in OUT_T, 5 params.
// Dispatch: `main` one workgroup per row; `per_lane` ceil(rows / 64).

override W_DTYPE: u32 = 0u;
override RMS: bool = false;
override SILU: bool = false;
override MODULATE: u32 = 0u;

struct Params {
    rows: u32,
    n: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    has_weight: u32,
    has_bias: u32,
    rows_per_batch: u32,
    emb_stride: u32,
    shift_off: u32,
    scale_off: u32,
}

@group(0) @binding(0) var<storage, read> x: array<ACT_T>;
@group(0) @binding(1) var<storage, read> weight: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<u32>;
@group(0) @binding(3) var<storage, read> emb: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<OUT_T>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> partial_a: array<f32, 64>;
var<workgroup> partial_b: array<f32, 64>;

// Row `row`'s element i, normalised to y, through the affine parameters,
// SiLU and modulation.
fn finish(row: u32, i: u32, y_in: f32) -> OUT_T {
    var y = y_in;
    let a = (row % p.groups) * (p.n / p.hw) + i / p.hw;
    if p.has_weight != 0u {
        y *= decode(W_DTYPE, weight[word_index(W_DTYPE, a)], a);
    }
    if p.has_bias != 0u {
        y += decode(W_DTYPE, bias[word_index(W_DTYPE, a)], a);
    }
    if SILU {
        y = y / (1.0 + exp(-y));
    }
    if MODULATE != 0u {
        let e = (row / p.rows_per_batch) * p.emb_stride;
        y *= 1.0 + emb[e + p.scale_off + i];
        if MODULATE == 1u {
            y += emb[e + p.shift_off + i];
        }
    }
    return OUT_T(y);
}

// The row's statistics over the elements start, start + stride, …: a
// workgroup's lane takes every 64th, `per_lane`'s lane all of them.
fn strided_sum(base: u32, start: u32, stride: u32) -> f32 {
    var s = 0.0;
    for (var i = start; i < p.n; i += stride) {
        s += f32(x[base + i]);
    }
    return s;
}

fn strided_sq_dev(base: u32, start: u32, stride: u32, mean: f32) -> f32 {
    var s2 = 0.0;
    for (var i = start; i < p.n; i += stride) {
        let d = f32(x[base + i]) - mean;
        s2 += d * d;
    }
    return s2;
}

fn strided_write(row: u32, start: u32, stride: u32, mean: f32, inv: f32) {
    let base = row * p.n;
    for (var i = start; i < p.n; i += stride) {
        out[base + i] = finish(row, i, (f32(x[base + i]) - mean) * inv);
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if row >= p.rows {
        return;
    }
    let base = row * p.n;
    var mean = 0.0;
    if !RMS {
        partial_a[lid] = strided_sum(base, lid, 64u);
        workgroupBarrier();
        var total = 0.0;
        for (var j = 0u; j < 64u; j++) {
            total += partial_a[j];
        }
        mean = total / f32(p.n);
    }
    partial_b[lid] = strided_sq_dev(base, lid, 64u, mean);
    workgroupBarrier();
    var total2 = 0.0;
    for (var j = 0u; j < 64u; j++) {
        total2 += partial_b[j];
    }
    strided_write(row, lid, 64u, mean, inverseSqrt(total2 / f32(p.n) + p.eps));
}

@compute @workgroup_size(64)
fn per_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg) * 64u + lid;
    if row >= p.rows {
        return;
    }
    let base = row * p.n;
    var mean = 0.0;
    if !RMS {
        mean = strided_sum(base, 0u, 1u) / f32(p.n);
    }
    let s2 = strided_sq_dev(base, 0u, 1u, mean);
    strided_write(row, 0u, 1u, mean, inverseSqrt(s2 / f32(p.n) + p.eps));
}
