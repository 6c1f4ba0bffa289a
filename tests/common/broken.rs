//! Broken copies of fixture weight folders, for the loaders' error tests
//! (shared by the SD3 and Lumina transformer tests).

use std::path::Path;

use safetensors::tensor::{serialize_to_file, Dtype, TensorView};

/// One tensor of a safetensors file: name, dtype, shape, bytes.
pub type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

/// A copy of the transformer folder `src` whose safetensors file is
/// rewritten by `edit`.
#[allow(dead_code)] // each test binary uses some of these helpers
pub fn broken_copy(src: &Path, edit: impl Fn(&mut Vec<Entry>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_broken(src, dir.path(), edit);
    dir
}

/// A pipeline folder like `model` (its other components linked) whose
/// transformer's weights are rewritten by `edit`.
#[allow(dead_code)] // each test binary uses some of these helpers
pub fn broken_pipeline(model: &Path, edit: impl Fn(&mut Vec<Entry>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "transformer" {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let transformer = dir.path().join("transformer");
    std::fs::create_dir(&transformer).unwrap();
    write_broken(&model.join("transformer"), &transformer, edit);
    dir
}

fn write_broken(src: &Path, dst: &Path, edit: impl Fn(&mut Vec<Entry>)) {
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
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
    serialize_to_file(views, None, &dst.join("diffusion_pytorch_model.safetensors")).unwrap();
}
