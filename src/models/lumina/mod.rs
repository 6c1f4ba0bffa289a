// TEMPORARY STUB (not committed): the lumina branch brings the real module.
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::models::dit::*;
use std::path::Path;
#[derive(Clone, Copy, Debug)]
pub struct LuminaOptions {
    pub scaling_watershed: f32,
    pub proportional_attn: bool,
}
pub struct LuminaTransformer {
    pub options: LuminaOptions,
}
impl LuminaTransformer {
    pub fn load_dir(_gpu: &Gpu, _dir: &Path) -> Result<Self> {
        todo!()
    }
}
pub fn forward_files(_gpu: &Gpu, _m: &LuminaTransformer, _i: &Path, _o: &Path) -> Result<()> {
    todo!()
}
impl Dit for LuminaTransformer {
    fn family(&self) -> &'static str {
        "lumina"
    }
    fn patch_size(&self) -> usize {
        2
    }
    fn latent_channels(&self) -> usize {
        4
    }
    fn guidance_rule(&self) -> GuidanceRule {
        todo!()
    }
    fn model_timestep(&self, t: f32) -> f32 {
        1.0 - t / 1000.0
    }
    fn kv_cache(&self, _gpu: &Gpu, _rows: usize, _n: usize, _c: &Conditioning) -> Result<KvCache> {
        todo!()
    }
    fn forward(&self, _gpu: &Gpu, _call: &DitCall) -> Result<Tensor> {
        todo!()
    }
}
pub struct LuminaConfig;
impl LuminaConfig {
    pub fn lumina_next_sft(_l: usize) -> Self {
        todo!()
    }
}
impl LuminaTransformer {
    pub fn load(_gpu: &Gpu, _w: &crate::weights::Weights, _c: LuminaConfig) -> Result<Self> {
        todo!()
    }
}
