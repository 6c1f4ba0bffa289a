// Rotary position embedding: for x [B, L, H, D], pair j < D/2 of token t in
// batch row b is rotated by the angle whose cosine and sine are cos[r, j],
// sin[r, j]:
//
//   (out[a], out[b]) = (x[a]·cos − x[b]·sin,  x[a]·sin + x[b]·cos)
//
// i.e. the complex product (x[a] + i·x[b])·(cos + i·sin). The pair layout is
// an override:
//   HALVES = 0: a = 2j, b = 2j + 1 (interleaved; Lumina, diffusers
//               `apply_rotary_emb(use_real=False)`),
//   HALVES = 1: a = j,  b = j + D/2 (transformers' `rotate_half`: Gemma,
//               Llama; their cos/sin tables repeat the D/2 angles twice).
// Table row r = (b·L + t) mod table_rows: tables [L, D/2] (table_rows = L)
// are shared by every batch row, tables [B, L, D/2] (table_rows = B·L) give
// each batch row its own positions (the active tokens of a RAS step differ
// per row). Heads always share a row.
//
// Bindings: 0 x, 1 cos, 2 sin, 3 out [B, L, H, D], 4 params.
// Dispatch: ceil(B·L·H·D/2 / 256) workgroups, one pair each.

override HALVES: u32 = 0u;

struct Params {
    pairs: u32,
    half: u32,
    heads: u32,
    table_rows: u32,
}

@group(0) @binding(0) var<storage, read> x: array<ACT_T>;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<ACT_T>;
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
    // Element a of the pair and its partner's distance from it.
    var a = 2u * i;
    var gap = 1u;
    if HALVES != 0u {
        a = 2u * (i - j) + j;
        gap = p.half;
    }
    let re = f32(x[a]);
    let im = f32(x[a + gap]);
    out[a] = ACT_T(re * c - im * s);
    out[a + gap] = ACT_T(re * s + im * c);
}
