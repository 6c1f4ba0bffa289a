//! Reference for `shaders/patch.wgsl`, as loops over the output layout.

pub fn patchify(x: &[f32], b: usize, c: usize, h: usize, w: usize, p: usize) -> Vec<f32> {
    let (ht, wt) = (h / p, w / p);
    let mut out = Vec::with_capacity(x.len());
    for bi in 0..b {
        for r in 0..ht {
            for col in 0..wt {
                for ch in 0..c {
                    for py in 0..p {
                        for px in 0..p {
                            out.push(x[((bi * c + ch) * h + r * p + py) * w + col * p + px]);
                        }
                    }
                }
            }
        }
    }
    out
}

pub fn unpatchify(x: &[f32], b: usize, c: usize, h: usize, w: usize, p: usize) -> Vec<f32> {
    let (ht, wt) = (h / p, w / p);
    let mut out = vec![0.0; b * c * h * w];
    for bi in 0..b {
        for r in 0..ht {
            for col in 0..wt {
                for py in 0..p {
                    for px in 0..p {
                        for ch in 0..c {
                            let f = (py * p + px) * c + ch;
                            let src = ((bi * ht + r) * wt + col) * (p * p * c) + f;
                            out[((bi * c + ch) * h + r * p + py) * w + col * p + px] = x[src];
                        }
                    }
                }
            }
        }
    }
    out
}
