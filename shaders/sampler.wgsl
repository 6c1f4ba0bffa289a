// One flow-matching Euler step with classifier-free guidance and the RAS
// velocity merge, per latent element:
//
//   v_hat  = CFG ? v_u + g · (v_c − v_u) : v      (v rows: [uncond × B, cond × B])
//   v_hat  = v_cache  where MERGE and the element's token was dropped this step
//   x_next = x + dsigma · v_hat
//
// Tokens are p×p latent patches, row-major over (H/p, W/p).
//
// Bindings: 0 x [B, C, H, W], 1 v [B or 2B, C, H, W], 2 v_cache [B, C, H, W],
// 3 dropped [B, tokens] u32 (2 and 3 ignored unless MERGE), 4 x_next, 5 v_hat,
// 6 params. Dispatch: ceil(B·C·H·W / 256) workgroups.

override CFG: bool = true;
override MERGE: bool = false;

struct Params {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
    guidance: f32,
    dsigma: f32,
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
    var vh = v[i];
    if CFG {
        // p.total elements per CFG half: the cond rows follow all uncond rows.
        vh = vh + p.guidance * (v[i + p.total] - vh);
    }
    if MERGE {
        let plane = p.h * p.w;
        let b = i / (p.c * plane);
        let yx = i % plane;
        let wt = p.w / p.ps;
        let token = ((yx / p.w) / p.ps) * wt + (yx % p.w) / p.ps;
        if dropped[b * (p.h / p.ps) * wt + token] != 0u {
            vh = v_cache[i];
        }
    }
    v_hat[i] = vh;
    x_next[i] = x[i] + p.dsigma * vh;
}
