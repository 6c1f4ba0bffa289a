// 2-D convolution with PyTorch Conv2d semantics on NCHW f32 activations:
//
//   out[b, co, oy, ox] = bias[co]
//       + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[b, ci, oy·STRIDE + ky − pad, ox·STRIDE + kx − pad]
//
// where taps outside the image read zero. Two entry points:
//
// `pack` rewrites weight [Cout, Cin, KH, KW] and bias [Cout] (f32, f16 or
// bf16 words, read through decode()) as f32 packed[t, co]: one row per tap
// t = (ci·KH + ky)·KW + kx, then one bias row (zeros without a bias), with co
// padded with zeros to whole channel blocks. A row then gives the weights of
// 4 output channels per vec4 load, with no decoding in the hot loop.
//
// `main` keeps a register tile per invocation: CO_T output channels by PX_T
// consecutive pixels of one output row, held as CB × PB mat4x4 blocks
// (columns = 4 channels, rows = 4 pixels). For each (ci, ky) it loads the
// input-row window its pixels touch ((PX_T − 1)·STRIDE + KW values) once and
// reuses it for all KW taps. Why this shape: lavapipe runs each invocation
// as a SIMD lane and emits every storage load as a per-lane loop, so loads,
// not FMAs, set the speed, and barriers are slower still; the tile maximises
// FMAs per load without workgroup memory.
//
// Bindings (main): 0 x, 1 packed (vec4), 2 out, 3 params.
// Bindings (pack): 0 weight, 1 bias (the weight again when HAS_BIAS = 0),
// 2 packed, 3 pack params.
// Dispatch (main): B · co_blocks · tiles workgroups, co_blocks = ceil(Cout /
// CO_T), tiles = ceil(groups / 64), groups = Hout · ceil(Wout / PX_T).
// Dispatch (pack): ceil((taps + 1) · co_blocks · CO_T / 256) workgroups.
// Overrides: KH, KW, STRIDE (main; constant so that the tap loops unroll and
// the tile stays in registers); W_DTYPE, B_DTYPE (decode codes) and HAS_BIAS
// (0 or 1) for pack.

override KH: u32 = 3u;
override KW: u32 = 3u;
override STRIDE: u32 = 1u;
override W_DTYPE: u32 = 0u;
override B_DTYPE: u32 = 0u;
override HAS_BIAS: u32 = 0u;

// Tile shape; src/kernels/conv2d.rs mirrors CO_T, PX_T, WIN_MAX and WG.
// Every loop that indexes acc, xin or wv must be unrolled by the driver, or
// the arrays spill to per-lane scratch memory and the kernel slows ~4×; on
// lavapipe CB × PB = 4 is the largest tile that still unrolls for 3×3
// kernels.
const CB: u32 = 2u;
const PB: u32 = 2u;
const CO_T: u32 = 4u * CB;
const PX_T: u32 = 4u * PB;
const WIN_MAX: u32 = 64u;
const WG: u32 = 64u;

struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    out_h: u32,
    out_w: u32,
    pad: u32,
    groups_per_row: u32,
    groups: u32,
    tiles: u32,
    co_blocks: u32,
}

struct PackParams {
    cout: u32,
    taps: u32,
    co_pad: u32,
    n: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> packed: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// The pack entry point's interface. Reusing binding numbers is allowed
// because no entry point uses both sets.
@group(0) @binding(0) var<storage, read> weight: array<u32>;
@group(0) @binding(1) var<storage, read> bias: array<u32>;
@group(0) @binding(2) var<storage, read_write> packed_out: array<f32>;
@group(0) @binding(3) var<uniform> pp: PackParams;

@compute @workgroup_size(256)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= pp.n {
        return;
    }
    let t = i / pp.co_pad;
    let co = i % pp.co_pad;
    var v = 0.0;
    if co < pp.cout {
        if t < pp.taps {
            let wi = co * pp.taps + t;
            v = decode(W_DTYPE, weight[word_index(W_DTYPE, wi)], wi);
        } else if HAS_BIAS != 0u {
            v = decode(B_DTYPE, bias[word_index(B_DTYPE, co)], co);
        }
    }
    packed_out[i] = v;
}

// Input at column ix of an input row, zero outside the image.
fn xload(row: u32, row_ok: bool, ix: i32) -> f32 {
    let v = x[row + u32(clamp(ix, 0, i32(p.w) - 1))];
    return select(0.0, v, row_ok && ix >= 0 && ix < i32(p.w));
}

// Four consecutive output pixels of channel co, skipping those out of range.
fn store4(b: u32, co: u32, oy: u32, ox: u32, v: vec4<f32>) {
    if co >= p.cout {
        return;
    }
    let i = ((b * p.cout + co) * p.out_h + oy) * p.out_w + ox;
    if ox < p.out_w { out[i] = v.x; }
    if ox + 1u < p.out_w { out[i + 1u] = v.y; }
    if ox + 2u < p.out_w { out[i + 2u] = v.z; }
    if ox + 3u < p.out_w { out[i + 3u] = v.w; }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let wg = flat_workgroup(wid, nwg);
    let tile = wg % p.tiles;
    let co_block = (wg / p.tiles) % p.co_blocks;
    let b = wg / (p.tiles * p.co_blocks);
    // The host's 2-D fold of large launches can round the grid up.
    if b >= p.batch {
        return;
    }
    // Invocations past the last pixel group compute a clamped copy and skip
    // the store, so every load below stays in bounds.
    let g = tile * WG + lid;
    let gc = min(g, p.groups - 1u);
    let oy = gc / p.groups_per_row;
    let ox0 = (gc % p.groups_per_row) * PX_T;
    let co4 = p.co_blocks * CB;
    let blk = co_block * CB;
    let taps = p.cin * KH * KW;

    var acc: array<mat4x4<f32>, CB * PB>;
    for (var cb = 0u; cb < CB; cb++) {
        let bv = packed[taps * co4 + blk + cb];
        for (var pb = 0u; pb < PB; pb++) {
            acc[cb * PB + pb] = mat4x4(vec4(bv.x), vec4(bv.y), vec4(bv.z), vec4(bv.w));
        }
    }

    let win = (PX_T - 1u) * STRIDE + KW;
    let iy0 = i32(oy * STRIDE) - i32(p.pad);
    let ix0 = i32(ox0 * STRIDE) - i32(p.pad);
    var xin: array<f32, WIN_MAX>;
    var wv: array<vec4<f32>, CB>;
    for (var ci = 0u; ci < p.cin; ci++) {
        let plane = (b * p.cin + ci) * p.h;
        for (var ky = 0u; ky < KH; ky++) {
            let iy = iy0 + i32(ky);
            let row_ok = iy >= 0 && iy < i32(p.h);
            let row = (plane + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w;
            for (var e = 0u; e < win; e++) {
                xin[e] = xload(row, row_ok, ix0 + i32(e));
            }
            let t0 = (ci * KH + ky) * KW;
            for (var kx = 0u; kx < KW; kx++) {
                let wrow = (t0 + kx) * co4 + blk;
                for (var cb = 0u; cb < CB; cb++) {
                    wv[cb] = packed[wrow + cb];
                }
                for (var pb = 0u; pb < PB; pb++) {
                    let e = kx + pb * 4u * STRIDE;
                    let xv = vec4(xin[e], xin[e + STRIDE], xin[e + 2u * STRIDE], xin[e + 3u * STRIDE]);
                    for (var cb = 0u; cb < CB; cb++) {
                        let w = wv[cb];
                        acc[cb * PB + pb] += mat4x4(xv * w.x, xv * w.y, xv * w.z, xv * w.w);
                    }
                }
            }
        }
    }

    if g >= p.groups {
        return;
    }
    // Matrix columns are indexed by constants: a loop over them did not
    // unroll and sent acc to scratch memory for the whole kernel.
    for (var cb = 0u; cb < CB; cb++) {
        for (var pb = 0u; pb < PB; pb++) {
            let m = acc[cb * PB + pb];
            let co = (blk + cb) * 4u;
            let ox = ox0 + pb * 4u;
            store4(b, co, oy, ox, m[0]);
            store4(b, co + 1u, oy, ox, m[1]);
            store4(b, co + 2u, oy, ox, m[2]);
            store4(b, co + 3u, oy, ox, m[3]);
        }
    }
}
