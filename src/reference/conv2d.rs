//! Reference for `shaders/conv2d.wgsl`: PyTorch `Conv2d` on NCHW tensors.

/// Sizes of one convolution, as the launcher sees them.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dShape {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2dShape {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding - self.kh) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding - self.kw) / self.stride + 1
    }
}

/// `x` [B, Cin, H, W], `weight` [Cout, Cin, kh, kw], `bias` [Cout] →
/// [B, Cout, Hout, Wout], with zero padding.
pub fn conv2d(s: &Conv2dShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut out = Vec::with_capacity(s.batch * s.cout * oh * ow);
    for b in 0..s.batch {
        for co in 0..s.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for ci in 0..s.cin {
                        for ky in 0..s.kh {
                            // Padding taps fall outside the image: skip them.
                            let Some(iy) = (oy * s.stride + ky).checked_sub(s.padding) else {
                                continue;
                            };
                            if iy >= s.h {
                                continue;
                            }
                            for kx in 0..s.kw {
                                let Some(ix) = (ox * s.stride + kx).checked_sub(s.padding) else {
                                    continue;
                                };
                                if ix >= s.w {
                                    continue;
                                }
                                let xv = x[((b * s.cin + ci) * s.h + iy) * s.w + ix];
                                let wv = weight[((co * s.cin + ci) * s.kh + ky) * s.kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    out
}
