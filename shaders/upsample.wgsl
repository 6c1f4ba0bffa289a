// Nearest-neighbour 2× upsampling of NCHW f32 tensors
// (F.interpolate(scale_factor=2, mode="nearest")):
//
//   out[b, c, oy, ox] = x[b, c, oy / 2, ox / 2]      out: [B, C, 2H, 2W]
//
// One invocation per input element, writing its 2 × 2 block. Input row r
// (over all planes, r = (b·C + c)·H + y) becomes output rows 2r and 2r + 1,
// so H never enters the indexing. The output is bound as vec2 pairs: each
// block row is one aligned pair, since output rows have even length 2W.
//
// Bindings: 0 x, 1 out (as vec2<f32>), 2 params.
// Dispatch: ceil(n / 256) workgroups, n = B·C·H·W.

struct Params {
    n: u32,
    w: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let r = i / p.w;
    let col = i % p.w;
    let v = vec2<f32>(x[i]);
    out[2u * r * p.w + col] = v;
    out[(2u * r + 1u) * p.w + col] = v;
}
