// One flow-matching Euler step with classifier-free guidance and the RAS
// velocity merge, per latent element of x [B, C, H, W]:
//
//   c, u   = the conditional / unconditional prediction of this element
//            (CFG rows: [uncond × B, cond × B], or cond first with COND_FIRST)
//   v_hat  = CFG and channel < guided ? u + g · (c − u) : c
//   v_hat  = −v_hat                      with NEGATE (the model predicts data − noise)
//   v_hat  = v_cache  where MERGE and the element's token was dropped this step
//   x_next = x + dsigma · v_hat
//
// The model output may have more channels than the latents (a learned
// variance): only the first C of its vc channels are read. Tokens are p×p
// latent patches, row-major over (H/p, W/p).
//
// Bindings: 0 x [B, C, H, W], 1 v [B or 2B, vc, H, W], 2 v_cache [B, C, H, W],
// 3 dropped [B, tokens] u32 (2 and 3 ignored unless MERGE), 4 x_next, 5 v_hat,
// 6 params. Dispatch: ceil(B·C·H·W / 256) workgroups.

override CFG: bool = true;
override MERGE: bool = false;
override COND_FIRST: bool = false;
override NEGATE: bool = false;

struct Params {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
    guidance: f32,
    dsigma: f32,
    vc: u32,
    guided: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read> dropped: array<u32>;
@group(0) @binding(4) var<storage, read_write> x_next: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_hat: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    let plane = p.h * p.w;
    let b = i / (p.c * plane);
    let ch = (i / plane) % p.c;
    let yx = i % plane;
    let batch = p.total / (p.c * plane);
    // Row of the conditional prediction, and of the unconditional one.
    var cond_row = b;
    var uncond_row = b;
    if CFG {
        if COND_FIRST {
            uncond_row = b + batch;
        } else {
            cond_row = b + batch;
        }
    }
    var vh = v[(cond_row * p.vc + ch) * plane + yx];
    if CFG && ch < p.guided {
        let vu = v[(uncond_row * p.vc + ch) * plane + yx];
        vh = vu + p.guidance * (vh - vu);
    }
    if NEGATE {
        vh = -vh;
    }
    if MERGE {
        let wt = p.w / p.ps;
        let token = ((yx / p.w) / p.ps) * wt + (yx % p.w) / p.ps;
        if dropped[b * (p.h / p.ps) * wt + token] != 0u {
            vh = v_cache[i];
        }
    }
    v_hat[i] = vh;
    x_next[i] = x[i] + p.dsigma * vh;
}
