// ---- shaders/linear_common.wgsl: appended to linear, linear_tiled and ----
// ---- linear_coopmat, which share their contract through it. -------------
//
// Bindings after x (0, declared by each kernel for its own load width):
//   1 w [N, K] in W_DTYPE words (0 f32, 1 f16, 2 bf16), 2 bias [N_total]
//   (same dtype, ignored unless has_bias), 3 in_idx [M] u32, 4 out_idx [M]
//   u32 (each ignored unless flagged), 5 residual [*, N_total] in ACT_T (x's type) and
//   6 emb [B, emb_stride] f32 (read by the gated epilogues only), 7 out
//   [*, N_total] in OUT_T (f32, or f16 for a half-precision K/V cache),
//   8 params.
//
// EPILOGUE, applied to y = x·wᵀ + bias before the store (fusing what would
// otherwise be a separate elementwise pass over the output):
//   0 none, 1 GELU (tanh approximation),
//   2 gated residual       out = residual + gate * y,
//   3 tanh-gated residual  out = residual + tanh(gate) * y,
//   4 SiLU-gated product   out = silu(residual) * y (SwiGLU's second half),
// with gate = emb[b, gate_off + column] for the batch row b = output row /
// rows_per_batch (adaLN-Zero gates, one vector per image).

override W_DTYPE: u32 = 0u;
override EPILOGUE: u32 = 0u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n_total: u32,
    n_offset: u32,
    has_bias: u32,
    tiles_n: u32,
    has_in_idx: u32,
    has_out_idx: u32,
    rows_per_batch: u32,
    emb_stride: u32,
    gate_off: u32,
    // First output column (a projection writing half of a fused K|V row).
    out_col: u32,
}

@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<u32>;
@group(0) @binding(3) var<storage, read> in_idx: array<u32>;
@group(0) @binding(4) var<storage, read> out_idx: array<u32>;
@group(0) @binding(5) var<storage, read> residual: array<ACT_T>;
@group(0) @binding(6) var<storage, read> emb: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<OUT_T>;
@group(0) @binding(8) var<uniform> p: Params;

// Input row of logical row m (clamped to a valid row past the edge).
fn x_row(m: u32) -> u32 {
    let r = min(m, p.m - 1u);
    return select(r, in_idx[r], p.has_in_idx != 0u);
}

fn out_row(m: u32) -> u32 {
    return select(m, out_idx[m], p.has_out_idx != 0u);
}

fn w_at(i: u32) -> f32 {
    return decode(W_DTYPE, w[word_index(W_DTYPE, i)], i);
}

// Stores the dot product `acc` of logical row m and chunk column n (both
// inside the output) with bias and epilogue.
fn store(m: u32, n: u32, acc: f32) {
    let col = p.n_offset + n;
    var y = acc;
    if p.has_bias != 0u {
        y += decode(W_DTYPE, bias[word_index(W_DTYPE, col)], col);
    }
    let o = out_row(m) * p.n_total + p.out_col + col;
    if EPILOGUE == 1u {
        y = gelu_tanh(y);
    } else if EPILOGUE == 4u {
        let r = f32(residual[o]);
        y *= r / (1.0 + exp(-r));
    } else if EPILOGUE >= 2u {
        var gate = emb[(out_row(m) / p.rows_per_batch) * p.emb_stride + p.gate_off + col];
        if EPILOGUE == 3u {
            gate = tanh(gate);
        }
        y = f32(residual[o]) + gate * y;
    }
    out[o] = OUT_T(y);
}
