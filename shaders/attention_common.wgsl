// ---- shaders/attention_common.wgsl: appended to attention, ----------------
// ---- attention_tiled and attention_coopmat, which share this contract. ----
//
// Element d of head h of token t of batch b lives at
//   off + (b · len + t) · stride + h · D + d
// of its buffer (Q, K and V may be slices of one fused buffer); out is
// contiguous [B, Lq, Hq, D]. Query head h reads kv head h / group.
//
// Bindings: 0 Q in Q_T, 1 K and 2 V in KV_T (declared by each kernel, which
// reads them at its own width), 3 key bias [B, Lk] f32 (KEY_BIASED), 4
// score bias (the portable kernel's BIASED), 5 out in O_T, 6 params.

override D: u32 = 64u;
override KEY_BIASED: u32 = 0u;

const LOG2E: f32 = 1.4426950408889634;
// Below any real score; finite so that differences of it never give NaN.
const NEG: f32 = -3.0e38;

struct Params {
    lq: u32,
    lk: u32,
    hq: u32,
    group: u32,
    q_off: u32,
    q_stride: u32,
    k_off: u32,
    k_stride: u32,
    v_off: u32,
    v_stride: u32,
    q_blocks: u32,
    scale_log2: f32,
    // At most lk, so tq + causal_off + 1 cannot wrap.
    causal_off: u32,
    // 1 when the bias [1, Lq, Lk] is shared by every head, else Hq.
    bias_heads: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> qs: array<Q_T>;
@group(0) @binding(3) var<storage, read> key_bias: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<O_T>;
@group(0) @binding(6) var<uniform> p: Params;

// What workgroup w works on: batch b, query head h, query block qb, and
// where its kv head's K and V rows start.
struct Block {
    b: u32,
    h: u32,
    qb: u32,
    k_base: u32,
    v_base: u32,
}

fn block_of(w: u32) -> Block {
    let qb = w % p.q_blocks;
    let h = (w / p.q_blocks) % p.hq;
    let b = w / (p.q_blocks * p.hq);
    let kv_col = (h / p.group) * D;
    return Block(b, h, qb, p.k_off + b * p.lk * p.k_stride + kv_col, p.v_off + b * p.lk * p.v_stride + kv_col);
}

// Key j's bias for batch b in log2 units: NEG past Lk, 0 without key bias.
// −∞ (a masked key) is clamped to NEG, which stays below every real score.
fn key_bias_log2(b: u32, j: u32) -> f32 {
    if j >= p.lk {
        return NEG;
    }
    if KEY_BIASED == 0u {
        return 0.0;
    }
    return max(key_bias[b * p.lk + j] * LOG2E, NEG);
}
