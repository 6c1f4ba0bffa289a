// adaLN modulation and gated residual, reading per-batch vectors straight
// out of the conditioning embedding (no chunk copies).
//
//   OP 0 (modulate):             out = x * (1 + scale[b]) + shift[b]
//   OP 1 (gated residual):       out = x + gate[b] * y
//   OP 2 (scale only):           out = x * (1 + scale[b])        (Lumina: no shift)
//   OP 3 (tanh-gated residual):  out = x + tanh(gate[b]) * y     (Lumina's gates)
//
// x, y, out are [B, N, D]; emb is [B, emb_stride] and the vectors are
// emb[b, off .. off + D] with off = shift_off / scale_off / gate_off (the
// host turns "chunk i of 6" into i * D).
//
// Bindings: 0 x, 1 y (bound to x for OP 0 and 2), 2 emb, 3 out, 4 params.
// Dispatch: ceil(B * N * D / 256) workgroups.

override OP: u32 = 0u;

struct Params {
    total: u32,
    per_batch: u32,
    d: u32,
    emb_stride: u32,
    off_a: u32,
    off_b: u32,
}

@group(0) @binding(0) var<storage, read> x: array<ACT_T>;
@group(0) @binding(1) var<storage, read> y: array<ACT_T>;
@group(0) @binding(2) var<storage, read> emb: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<ACT_T>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    let e = (i / p.per_batch) * p.emb_stride + i % p.d;
    switch OP {
        // off_a = shift, off_b = scale
        case 0u: { out[i] = ACT_T(f32(x[i]) * (1.0 + emb[e + p.off_b]) + emb[e + p.off_a]); }
        // off_a = gate
        case 1u: { out[i] = ACT_T(f32(x[i]) + emb[e + p.off_a] * f32(y[i])); }
        // off_a = scale
        case 2u: { out[i] = ACT_T(f32(x[i]) * (1.0 + emb[e + p.off_a])); }
        // off_a = gate
        default: { out[i] = ACT_T(f32(x[i]) + tanh(emb[e + p.off_a]) * f32(y[i])); }
    }
}
