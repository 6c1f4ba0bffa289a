// DiT patch layout changes between NCHW latents and token rows.
//
//   patchify   (entry `patchify`):   x [B, C, H, W] → out [B, h·w, C·p·p] with
//              feature f = ch·p² + py·p + px (channel-major, the order of a
//              Conv2d weight [D, C, p, p] flattened), token n = r·w + c.
//   unpatchify (entry `unpatchify`): x [B, h·w, p·p·C] → out [B, C, H, W] with
//              feature f = (py·p + px)·C + ch (channel-minor, diffusers'
//              "n h w p q c → n c h p w q").
// h = H / p, w = W / p. Both are pure permutations: one element per invocation,
// indexed by the output position.
//
// Bindings: 0 x, 1 out, 2 params. Dispatch: ceil(total / 256) workgroups.

struct Params {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    ps: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// Index into NCHW of (batch b, channel ch, token (r, c), pixel (py, px)).
fn nchw(b: u32, ch: u32, r: u32, c: u32, py: u32, px: u32) -> u32 {
    return ((b * p.c + ch) * p.h + r * p.ps + py) * p.w + c * p.ps + px;
}

@compute @workgroup_size(256)
fn patchify(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    let pp = p.ps * p.ps;
    let feats = p.c * pp;
    let wt = p.w / p.ps;
    let tokens = (p.h / p.ps) * wt;
    let f = i % feats;
    let n = (i / feats) % tokens;
    let b = i / (feats * tokens);
    out[i] = x[nchw(b, f / pp, n / wt, n % wt, (f % pp) / p.ps, f % p.ps)];
}

@compute @workgroup_size(256)
fn unpatchify(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * 256u + lid;
    if i >= p.total {
        return;
    }
    // i is the NCHW output index.
    let xx = i % p.w;
    let yy = (i / p.w) % p.h;
    let ch = (i / (p.w * p.h)) % p.c;
    let b = i / (p.w * p.h * p.c);
    let wt = p.w / p.ps;
    let tokens = (p.h / p.ps) * wt;
    let n = (yy / p.ps) * wt + xx / p.ps;
    let f = ((yy % p.ps) * p.ps + xx % p.ps) * p.c + ch;
    out[i] = x[(b * tokens + n) * (p.c * p.ps * p.ps) + f];
}
