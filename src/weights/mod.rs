//! Safetensors weight store, memory-mapped, with prefix-scoped lookups by
//! diffusers key name (like candle's `VarBuilder::pp`), so that a model file
//! reads like the module tree: `w.pp("transformer_blocks").pp(3).pp("attn")`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};

mod index;
use index::shard_names;

struct WeightFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

struct Store {
    files: Vec<WeightFile>,
    /// Key → index into `files`.
    keys: HashMap<String, usize>,
    used: Mutex<HashSet<String>>,
    /// Benchmark stores hold no files: every lookup succeeds with
    /// deterministic filler values in this dtype.
    synthetic: Option<DType>,
}

/// A view of the weight store under a key prefix. Cheap to clone.
#[derive(Clone)]
pub struct Weights {
    store: Arc<Store>,
    prefix: String,
}

fn file_error(path: &Path, message: impl Display) -> Error {
    Error::WeightFile {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn open_file(path: &Path) -> Result<WeightFile> {
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    // SAFETY: the map is read-only; like every mmap-based loader we rely on
    // the file not being truncated while the model is loaded.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| file_error(path, e))?;
    let (n, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
        file_error(
            path,
            format!("not a valid safetensors file ({e}); is it truncated? Download it again"),
        )
    })?;
    Ok(WeightFile {
        path: path.to_owned(),
        mmap,
        data_start: 8 + n,
        metadata,
    })
}

impl Weights {
    /// Opens the given safetensors files as one store.
    pub fn from_files(paths: &[PathBuf]) -> Result<Weights> {
        let mut files = Vec::new();
        let mut keys = HashMap::new();
        for path in paths {
            let f = open_file(path)?;
            for key in f.metadata.tensors().keys() {
                keys.insert(key.clone(), files.len());
            }
            files.push(f);
        }
        Ok(Weights {
            store: Arc::new(Store {
                files,
                keys,
                used: Mutex::default(),
                synthetic: None,
            }),
            prefix: String::new(),
        })
    }

    /// Opens a diffusers component folder: `<stem>.safetensors`, or the shards
    /// listed in `<stem>.safetensors.index.json`.
    pub fn from_dir(dir: &Path, stem: &str) -> Result<Weights> {
        let single = dir.join(format!("{stem}.safetensors"));
        if single.exists() {
            return Self::from_files(&[single]);
        }
        let index = dir.join(format!("{stem}.safetensors.index.json"));
        let text = std::fs::read_to_string(&index).map_err(|_| {
            file_error(
                dir,
                format!("neither {stem}.safetensors nor {stem}.safetensors.index.json found"),
            )
        })?;
        let shards = shard_names(&text, &index)?;
        Self::from_files(&shards.iter().map(|s| dir.join(s)).collect::<Vec<_>>())
    }

    /// A store that answers every lookup with small filler values of the
    /// requested shape in `dtype`: lets benchmarks build a model at real
    /// widths from its config alone, through the model's own loader.
    pub fn synthetic(dtype: DType) -> Weights {
        let store = Store {
            files: Vec::new(),
            keys: HashMap::new(),
            used: Mutex::default(),
            synthetic: Some(dtype),
        };
        Weights {
            store: Arc::new(store),
            prefix: String::new(),
        }
    }

    /// The view under `prefix.name`.
    pub fn pp(&self, name: impl Display) -> Weights {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Weights {
            store: self.store.clone(),
            prefix,
        }
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.store.synthetic.is_some() || self.store.keys.contains_key(&self.key(name))
    }

    /// Raw bytes, dtype and shape of tensor `name`, checked against `shape`.
    fn raw(&self, name: &str, shape: &[usize]) -> Result<(Cow<'_, [u8]>, DType, Vec<usize>)> {
        let key = self.key(name);
        if let Some(dtype) = self.store.synthetic {
            return Ok((
                Cow::Owned(filler_bytes(&key, shape.iter().product(), dtype)),
                dtype,
                shape.to_vec(),
            ));
        }
        let Some(&i) = self.store.keys.get(&key) else {
            let files = self
                .store
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>();
            return Err(Error::MissingWeight {
                key,
                files: files.join(", "),
            });
        };
        let f = &self.store.files[i];
        let file = f.path.display().to_string();
        let info = f
            .metadata
            .info(&key)
            .ok_or_else(|| file_error(&f.path, "index out of sync"))?;
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(Error::WeightDType {
                    key,
                    file,
                    dtype: format!("{other:?}"),
                })
            }
        };
        // Leading 1s are squeezed: diffusers stores some vectors as [1, N, D].
        // The file's shape is validated by the safetensors reader; the
        // requested one comes from a config and may overflow.
        let numel: usize = info.shape.iter().product();
        let wanted = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if Some(numel) != wanted || strip_ones(&info.shape) != strip_ones(shape) {
            return Err(Error::WeightShape {
                key,
                file,
                expected: shape.to_vec(),
                got: info.shape.clone(),
            });
        }
        let (start, end) = info.data_offsets;
        let bytes = &f.mmap[f.data_start + start..f.data_start + end];
        self.store
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok((Cow::Borrowed(bytes), dtype, info.shape.clone()))
    }

    /// Tensor `name` uploaded in its stored dtype (f32, f16 or bf16).
    pub fn get(&self, gpu: &Gpu, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (bytes, dtype, _) = self.raw(name, shape)?;
        gpu.upload_weight(&bytes, shape, dtype)
    }

    /// Tensors `parts` (each a view and a name, each of `shape`) stacked
    /// along dimension 0 into one upload: fused projections such as K|V.
    /// Kept in their stored dtype when all share it, else as f32.
    pub fn get_stacked(gpu: &Gpu, parts: &[(&Weights, &str)], shape: &[usize]) -> Result<Tensor> {
        let raws = parts
            .iter()
            .map(|(w, name)| w.raw(name, shape))
            .collect::<Result<Vec<_>>>()?;
        let dtype = match raws.iter().all(|(_, d, _)| *d == raws[0].1) {
            true => raws[0].1,
            false => DType::F32,
        };
        let mut bytes = Vec::new();
        for (b, d, _) in &raws {
            match *d == dtype {
                true => bytes.extend_from_slice(b),
                false => bytes.extend(d.to_f32(b).iter().flat_map(|v| v.to_le_bytes())),
            }
        }
        let mut stacked = shape.to_vec();
        match stacked.first_mut() {
            Some(first) => *first *= parts.len(),
            None => stacked = vec![parts.len()],
        }
        gpu.upload_weight(&bytes, &stacked, dtype)
    }

    /// Tensor `name` as f32 values on the host.
    pub fn get_host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (bytes, dtype, _) = self.raw(name, shape)?;
        Ok(dtype.to_f32(&bytes))
    }

    /// Rows `rows` of the 2-D tensor `name` (`shape` = `[rows, cols]`) as f32
    /// `[rows.len(), cols]` on the host, read from the file without the rest
    /// of it: an embedding lookup that leaves a large table off the GPU.
    pub fn get_rows(&self, name: &str, shape: &[usize], rows: &[u32]) -> Result<Vec<f32>> {
        let &[n, cols] = shape else {
            return Err(Error::shape("get_rows", format!("{name}: {shape:?} is not 2-D")));
        };
        let (bytes, dtype, _) = self.raw(name, shape)?;
        let row_bytes = cols * dtype.size();
        let mut out = Vec::with_capacity(rows.len() * cols);
        for &r in rows {
            if r as usize >= n {
                return Err(Error::IndexOutOfRange {
                    op: "get_rows",
                    index: r as u64,
                    len: n as u64,
                });
            }
            out.extend(dtype.to_f32(&bytes[r as usize * row_bytes..][..row_bytes]));
        }
        Ok(out)
    }

    /// The stored shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let key = self.key(name);
        let &i = self.store.keys.get(&key)?;
        self.store.files[i]
            .metadata
            .info(&key)
            .map(|info| info.shape.clone())
    }

    /// Keys never read so far, sorted (for the load report).
    pub fn unused(&self) -> Vec<String> {
        let used = self.store.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<String> = self
            .store
            .keys
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}

fn strip_ones(shape: &[usize]) -> &[usize] {
    let lead = shape.iter().take_while(|&&d| d == 1).count();
    &shape[lead.min(shape.len().saturating_sub(1))..]
}

/// Values of one tensor to save.
pub enum Values {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// Writes tensors `(name, shape, values)` to a safetensors file.
pub fn save(path: &Path, tensors: &[(String, Vec<usize>, Values)]) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, shape, values)| {
            let (dtype, bytes): (Dtype, &[u8]) = match values {
                Values::F32(v) => (Dtype::F32, bytemuck::cast_slice(v)),
                Values::I32(v) => (Dtype::I32, bytemuck::cast_slice(v)),
            };
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| file_error(path, e))?;
    crate::output::write_atomic(path, |out| out.write_all(&bytes))
}

/// Reads tensor `name` and its shape from a safetensors file view, as f32:
/// floating-point tensors (f32, f16, bf16) and integer or boolean ones
/// (masks and token ids as tokenizers and torch write them: i64, i32, u8,
/// bool).
pub fn load_f32(file: &Weights, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
    let shape = file.shape(name).ok_or_else(|| Error::MissingWeight {
        key: name.into(),
        files: file
            .store
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    if let Some(values) = file.integers_host(name) {
        return Ok((values, shape));
    }
    Ok((file.get_host(name, &shape)?, shape))
}

impl Weights {
    /// Tensor `name` converted to f32 when it is stored as an integer or
    /// boolean tensor; `None` for any other dtype or a missing key.
    fn integers_host(&self, name: &str) -> Option<Vec<f32>> {
        let key = self.key(name);
        let f = &self.store.files[*self.store.keys.get(&key)?];
        let info = f.metadata.info(&key)?;
        let (start, end) = info.data_offsets;
        let bytes = &f.mmap[f.data_start + start..f.data_start + end];
        let values: Vec<f32> = match info.dtype {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                .collect(),
            Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| b as f32).collect(),
            _ => return None,
        };
        self.store
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Some(values)
    }
}

/// Values in ±0.02 from a hash of the key: small enough that activations
/// stay finite through many layers, different for every tensor.
fn filler_bytes(key: &str, n: usize, dtype: DType) -> Vec<u8> {
    let mut state = key
        .bytes()
        .fold(0x9e37_79b9u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32 - 0.5) * 0.04
    };
    match dtype {
        DType::F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(next()).to_le_bytes())
            .collect(),
        DType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(next()).to_le_bytes())
            .collect(),
        _ => (0..n).flat_map(|_| next().to_le_bytes()).collect(),
    }
}
