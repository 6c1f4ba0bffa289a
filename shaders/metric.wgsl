// The RAS region metric (ras-spec §4.2): for each patch token, the mean over
// its p×p latent pixels of a per-pixel reduction over channels,
//   METRIC 0 (std):    unbiased standard deviation over C (torch.std default)
//   METRIC 1 (l2norm): sqrt(sum over C of v²)
// Tokens are row-major over (H/p, W/p), matching DiT patch order.
//
// One invocation per token: C and p are small (16 and 2 for SD3), and
// each pixel's channels are read twice (mean, then squared deviations).
//
// Bindings: 0 v [B, C, H, W] f32, 1 out [B, (H/p)·(W/p)] f32, 2 params.
// Dispatch: ceil(B · tokens / 64) workgroups.

override METRIC: u32 = 0u;

struct Params {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
}

@group(0) @binding(0) var<storage, read> v: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_workgroup(wid, nwg) * 64u + lid;
    if t >= p.total {
        return;
    }
    let wt = p.w / p.ps;
    let tokens = (p.h / p.ps) * wt;
    let b = t / tokens;
    let r = (t % tokens) / wt;
    let col = (t % tokens) % wt;
    let plane = p.h * p.w;
    var acc = 0.0;
    for (var py = 0u; py < p.ps; py++) {
        for (var px = 0u; px < p.ps; px++) {
            let pix = b * p.c * plane + (r * p.ps + py) * p.w + col * p.ps + px;
            var mean = 0.0;
            if METRIC == 0u {
                for (var ch = 0u; ch < p.c; ch++) {
                    mean += v[pix + ch * plane];
                }
                mean /= f32(p.c);
            }
            var ss = 0.0;
            for (var ch = 0u; ch < p.c; ch++) {
                let d = v[pix + ch * plane] - mean;
                ss += d * d;
            }
            acc += select(sqrt(ss), sqrt(ss / f32(p.c - 1u)), METRIC == 0u);
        }
    }
    out[t] = acc / f32(p.ps * p.ps);
}
