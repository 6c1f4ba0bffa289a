//! Broken copies of fixture weight folders, for the loaders' error tests
//! (shared by the SD3 and Lumina transformer tests).

use std::path::Path;

use safetensors::tensor::{serialize_to_file, Dtype, TensorView};

/// One tensor of a safetensors file: name, dtype, shape, bytes.
pub type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

/// A copy of the transformer folder `src` whose safetensors file is
/// rewritten by `edit`.
pub fn broken_copy(src: &Path, edit: impl Fn(&mut Vec<Entry>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
    serialize_to_file(
        views,
        None,
        &dir.path().join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    dir
}
