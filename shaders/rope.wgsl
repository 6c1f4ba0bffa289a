// Rotary position embedding, interleaved pairs (Lumina, diffusers
// `apply_rotary_emb(use_real=False)`): for x [B, L, H, D] and pair j < D/2
// of token t in batch row b,
//
//   (out[2j], out[2j+1]) = (x[2j]·cos[r, j] − x[2j+1]·sin[r, j],
//                           x[2j]·sin[r, j] + x[2j+1]·cos[r, j])
//
// i.e. the complex product (x[2j] + i·x[2j+1])·(cos + i·sin), with table row
// r = (b·L + t) mod table_rows: tables [L, D/2] (table_rows = L) are shared
// by every batch row, tables [B, L, D/2] (table_rows = B·L) give each batch
// row its own positions (the active tokens of a RAS step differ per row).
// Heads always share a row.
//
// Bindings: 0 x, 1 cos, 2 sin, 3 out [B, L, H, D], 4 params.
// Dispatch: ceil(B·L·H·D/2 / 256) workgroups, one pair each.

struct Params {
    pairs: u32,
    half: u32,
    heads: u32,
    table_rows: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.pairs {
        return;
    }
    let j = i % p.half;
    let r = (i / (p.half * p.heads)) % p.table_rows;
    let c = cos_t[r * p.half + j];
    let s = sin_t[r * p.half + j];
    let re = x[2u * i];
    let im = x[2u * i + 1u];
    out[2u * i] = re * c - im * s;
    out[2u * i + 1u] = re * s + im * c;
}
