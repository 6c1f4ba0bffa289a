// TEMPORARY STUB (not committed): the gemma branch brings the real module.
use super::ModelDir;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::Conditioning;
pub struct LuminaTextEncoder;
impl LuminaTextEncoder {
    pub fn load(_gpu: &Gpu, _dir: &ModelDir) -> Result<Self> {
        todo!()
    }
    pub fn encode(
        &self,
        _gpu: &Gpu,
        _p: &str,
        _n: Option<&str>,
        _k: usize,
        _m: usize,
    ) -> Result<(Conditioning, Option<Conditioning>)> {
        todo!()
    }
}
