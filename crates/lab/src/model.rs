//! In-memory model folders: tensors (floats decoded to f32), config, tokenizer, layout;
//! reading any Hub-style folder and writing deterministic, Hub-style sharded output.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use half::{bf16, f16};
use rayon::prelude::*;
use serde_json::Value;

pub use crate::dtype::DType;

/// Tensor payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Decoded float values (row-major).
    F32(Vec<f32>),
    /// Undecoded bytes of a non-float dtype.
    Raw(Vec<u8>),
}

/// One tensor: dtype it is stored as, shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Storage dtype on write.
    pub dtype: DType,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Values.
    pub data: Data,
}

impl Tensor {
    /// A float tensor.
    pub fn new(dtype: DType, shape: Vec<usize>, values: Vec<f32>) -> Self {
        Tensor {
            dtype,
            shape,
            data: Data::F32(values),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Float values, or an error naming `name` for raw tensors.
    pub fn values(&self, name: &str) -> Result<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            Data::Raw(_) => bail!(
                "tensor {name}: dtype {} is not a float type",
                self.dtype.name()
            ),
        }
    }

    /// Mutable float values, or an error naming `name`.
    pub fn values_mut(&mut self, name: &str) -> Result<&mut Vec<f32>> {
        let dt = self.dtype;
        match &mut self.data {
            Data::F32(v) => Ok(v),
            Data::Raw(_) => bail!("tensor {name}: dtype {} is not a float type", dt.name()),
        }
    }

    /// `(rows, cols)` of a 2-D tensor, `(1, n)` of a vector.
    pub fn dims2(&self) -> (usize, usize) {
        match self.shape.len() {
            0 => (1, 1),
            1 => (1, self.shape[0]),
            _ => (self.shape[0], self.shape[1..].iter().product()),
        }
    }

    /// Encoded little-endian bytes in `self.dtype`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.data {
            Data::Raw(b) => b.clone(),
            Data::F32(v) => encode(self.dtype, v),
        }
    }
}

/// Encode floats into `dtype` bytes (round to nearest even).
pub fn encode(dtype: DType, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * dtype.size());
    match dtype {
        DType::F32 => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        DType::BF16 => v
            .iter()
            .for_each(|x| out.extend_from_slice(&bf16::from_f32(*x).to_le_bytes())),
        DType::F16 => v
            .iter()
            .for_each(|x| out.extend_from_slice(&f16::from_f32(*x).to_le_bytes())),
        DType::Other(..) => unreachable!("encode called with a non-float dtype"),
    }
    out
}

/// Round `v` in place to values representable in `dtype`.
pub fn round_values(dtype: DType, v: &mut [f32]) {
    match dtype {
        DType::BF16 => v.iter_mut().for_each(|x| *x = bf16::from_f32(*x).to_f32()),
        DType::F16 => v.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32()),
        _ => {}
    }
}

fn decode(dtype: DType, b: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::Other(..) => unreachable!("decode called with a non-float dtype"),
    }
}

/// How tensors are laid out over files when written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// Number of shards (1 = a single `model.safetensors`, no index).
    pub shards: usize,
    /// Write order; names missing here follow in natural order.
    pub order: Vec<String>,
    /// Explicit shard (0-based) per tensor; when non-empty it overrides `shards`
    /// (tensors missing here go to the last shard).
    pub assign: BTreeMap<String, usize>,
}

/// A model folder in memory.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// `config.json`.
    pub config: Value,
    /// `tokenizer.json`, if any.
    pub tokenizer: Option<Value>,
    /// Other files copied verbatim (`tokenizer_config.json`, `generation_config.json`, …).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Shards and tensor order.
    pub layout: Layout,
    /// `__metadata__` written into every shard header.
    pub metadata: BTreeMap<String, String>,
    /// Original bytes of config/tokenizer, reused verbatim when the value is unchanged.
    pub original: BTreeMap<String, (Value, Vec<u8>)>,
    /// The lab recipe this model was generated from, if it came from the lab.
    pub recipe: Option<crate::recipe::Recipe>,
}

impl Model {
    /// Tensor by name, or an error.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow!("missing tensor {name}"))
    }

    /// Mutable tensor by name, or an error.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        self.tensors
            .get_mut(name)
            .ok_or_else(|| anyhow!("missing tensor {name}"))
    }

    /// Round every float value to what its storage dtype can hold, so the in-memory model equals
    /// the model as written (and as read back).
    pub fn round_to_dtype(&mut self) {
        use rayon::prelude::*;
        self.tensors.par_iter_mut().for_each(|(_, t)| {
            let dt = t.dtype;
            if let Data::F32(v) = &mut t.data {
                round_values(dt, v);
            }
        });
    }

    /// Rename every tensor through `f` (also in the write order). Errors on collisions.
    pub fn rename_all(&mut self, f: impl Fn(&str) -> String) -> Result<()> {
        let old = std::mem::take(&mut self.tensors);
        for (k, v) in old {
            let n = f(&k);
            if self.tensors.insert(n.clone(), v).is_some() {
                bail!("renaming produced a duplicate tensor name {n}");
            }
        }
        self.layout.order = self.layout.order.iter().map(|k| f(k)).collect();
        self.layout.assign = std::mem::take(&mut self.layout.assign)
            .into_iter()
            .map(|(k, v)| (f(&k), v))
            .collect();
        Ok(())
    }

    /// Names in write order: explicit order first, then the rest in natural order.
    pub fn write_order(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(self.tensors.len());
        for n in &self.layout.order {
            if self.tensors.contains_key(n) && seen.insert(n.clone()) {
                out.push(n.clone());
            }
        }
        let mut rest: Vec<&String> = self.tensors.keys().filter(|k| !seen.contains(*k)).collect();
        rest.sort_by(|a, b| natural_cmp(a, b));
        out.extend(rest.into_iter().cloned());
        out
    }

    /// Integer config field.
    pub fn cfg_usize(&self, key: &str) -> Option<usize> {
        self.config
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    }

    /// Set a config field.
    pub fn set_cfg(&mut self, key: &str, v: Value) {
        if let Value::Object(m) = &mut self.config {
            m.insert(key.to_string(), v);
        }
    }
}

/// Compare strings with embedded numbers numerically (`layers.2` < `layers.10`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let d = bytes[i].is_ascii_digit();
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_digit() == d {
                j += 1;
            }
            out.push((d, &s[i..j]));
            i = j;
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (xa, ya) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xa.len().cmp(&ya.len()).then(xa.cmp(ya))
            }
            _ => x.1.cmp(y.1),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len()).then(a.cmp(b))
}

/// Recursively rebuild a JSON value with object keys in sorted order.
pub fn sorted_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, sorted_json(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_json).collect()),
        other => other.clone(),
    }
}

/// Deterministic pretty JSON with sorted keys and a trailing newline.
pub fn json_bytes(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(&sorted_json(v)).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}

/// Build a safetensors header for `(name, dtype, shape, byte_len)` entries in data order.
/// Returns the padded header bytes (8-byte length prefix included) and each entry's offset.
pub fn safetensors_header(
    entries: &[(String, DType, Vec<usize>, usize)],
    metadata: &BTreeMap<String, String>,
) -> (Vec<u8>, Vec<usize>) {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    let mut offsets = Vec::with_capacity(entries.len());
    let mut off = 0usize;
    for (name, dt, shape, len) in entries {
        offsets.push(off);
        map.insert(
            name.clone(),
            serde_json::json!({"dtype": dt.name(), "shape": shape, "data_offsets": [off, off + len]}),
        );
        off += len;
    }
    let mut s = String::from("{");
    let mut first = true;
    if !metadata.is_empty() {
        s.push_str("\"__metadata__\":");
        s.push_str(&serde_json::to_string(metadata).unwrap_or_default());
        first = false;
    }
    for (k, v) in &map {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(&serde_json::to_string(k).unwrap_or_default());
        s.push(':');
        // dtype, shape, data_offsets in a fixed order
        s.push_str(&format!(
            "{{\"dtype\":{},\"shape\":{},\"data_offsets\":{}}}",
            v["dtype"], v["shape"], v["data_offsets"]
        ));
    }
    s.push('}');
    while (s.len() + 8) % 8 != 0 {
        s.push(' ');
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    (out, offsets)
}

/// Shard file name as on the Hub.
pub fn shard_name(i: usize, n: usize) -> String {
    if n == 1 {
        "model.safetensors".to_string()
    } else {
        format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
    }
}

/// Write a model folder: shards (+ index), `config.json`, tokenizer and other files.
/// Output depends only on the model value, so equal models give byte-identical folders.
/// Existing `*.safetensors` files and the index in `dir` are removed first, so no stale shard survives.
pub fn write_model(model: &Model, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in list_files(dir)? {
        let n = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if n.ends_with(".safetensors") || n == "model.safetensors.index.json" {
            fs::remove_file(&f).with_context(|| format!("removing stale {}", f.display()))?;
        }
    }
    let order = model.write_order();
    let sizes: Vec<usize> = order
        .iter()
        .map(|n| model.tensors[n].numel() * model.tensors[n].dtype.size())
        .collect();
    let total: usize = sizes.iter().sum();
    let nshards = model.layout.shards.clamp(1, order.len().max(1));
    // contiguous chunks balanced by bytes; empty shards are dropped
    let mut assign = Vec::with_capacity(order.len());
    let mut acc = 0u128;
    let explicit_last = model.layout.assign.values().copied().max().unwrap_or(0);
    for (i, s) in sizes.iter().enumerate() {
        if !model.layout.assign.is_empty() {
            assign.push(
                model
                    .layout
                    .assign
                    .get(&order[i])
                    .copied()
                    .unwrap_or(explicit_last),
            );
            continue;
        }
        let mid = acc + (*s as u128) / 2;
        let k = if total == 0 {
            0
        } else {
            (mid * nshards as u128 / total as u128) as usize
        };
        assign.push(k.min(nshards - 1));
        acc += *s as u128;
    }
    let mut renum = BTreeMap::new();
    let mut sorted_shards = assign.clone();
    sorted_shards.sort();
    for a in &sorted_shards {
        let next = renum.len();
        renum.entry(*a).or_insert(next);
    }
    for a in assign.iter_mut() {
        *a = renum[a];
    }
    let used = assign.last().map(|s| s + 1).unwrap_or(1);
    let mut weight_map = BTreeMap::new();
    let groups: Vec<Vec<usize>> = (0..used)
        .map(|k| (0..order.len()).filter(|i| assign[*i] == k).collect())
        .collect();
    groups
        .par_iter()
        .enumerate()
        .try_for_each(|(k, idx)| -> Result<()> {
            let entries: Vec<(String, DType, Vec<usize>, usize)> = idx
                .iter()
                .map(|&i| {
                    let t = &model.tensors[&order[i]];
                    (order[i].clone(), t.dtype, t.shape.clone(), sizes[i])
                })
                .collect();
            let (header, _) = safetensors_header(&entries, &model.metadata);
            let path = dir.join(shard_name(k, used));
            let f =
                fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            w.write_all(&header)?;
            for &i in idx {
                w.write_all(&model.tensors[&order[i]].to_bytes())?;
            }
            w.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(())
        })?;
    for (i, n) in order.iter().enumerate() {
        weight_map.insert(n.clone(), shard_name(assign[i], used));
    }
    if used > 1 {
        let idx = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        fs::write(dir.join("model.safetensors.index.json"), json_bytes(&idx))?;
    }
    write_json_file(model, dir, "config.json", Some(&model.config))?;
    write_json_file(model, dir, "tokenizer.json", model.tokenizer.as_ref())?;
    for (name, bytes) in &model.files {
        fs::write(dir.join(name), bytes)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(())
}

/// Writes `v` as `dir/name`: the bytes it was read from when unchanged, else [`json_bytes`].
pub(crate) fn write_json_file(
    model: &Model,
    dir: &Path,
    name: &str,
    v: Option<&Value>,
) -> Result<()> {
    let Some(v) = v else { return Ok(()) };
    let path = dir.join(name);
    let bytes = match model.original.get(name) {
        Some((orig, b)) if orig == v => b.clone(),
        _ => json_bytes(v),
    };
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Read a model folder (`*.safetensors` with or without an index, `config.json`, tokenizer, other small files).
/// Other weight formats (`*.bin`, `*.pt`, `*.gguf`, …) and side files over [`MAX_SIDE_FILE`] are not carried over.
/// Float tensors are decoded to f32; others are kept raw. Errors name the file or tensor.
pub fn read_model(dir: &Path) -> Result<Model> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let files = shard_names(dir)?;
    if files.is_empty() {
        bail!("{}: no *.safetensors files", dir.display());
    }
    let mut model = read_shards(dir, &files)?;
    read_config_and_tokenizer(dir, &mut model)?;
    read_side_files(dir, &mut model)?;
    Ok(model)
}

/// The shard file names of a folder, in natural order: those its index names, or every
/// `*.safetensors` file without an index.
fn shard_names(dir: &Path) -> Result<Vec<String>> {
    let index_path = dir.join("model.safetensors.index.json");
    Ok(if index_path.exists() {
        let idx: Value = serde_json::from_slice(
            &fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?,
        )
        .with_context(|| format!("parsing {}", index_path.display()))?;
        let wm = idx
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("{}: no weight_map object", index_path.display()))?;
        let mut set = BTreeSet::new();
        for (k, v) in wm {
            let f = v.as_str().ok_or_else(|| {
                anyhow!("{}: weight_map[{k}] is not a string", index_path.display())
            })?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                bail!("{}: refusing shard path {f:?}", index_path.display());
            }
            set.insert(f.to_string());
        }
        let mut v: Vec<String> = set.into_iter().collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    } else {
        let mut v: Vec<String> = fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".safetensors"))
            .collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    })
}

/// The tensors of `files` (decoded when float), with their order, shard assignment and the
/// shards' `__metadata__`.
fn read_shards(dir: &Path, files: &[String]) -> Result<Model> {
    let mut model = Model::default();
    let mut order = Vec::new();
    let mut metadata = BTreeMap::new();
    let mut assign = BTreeMap::new();
    for (fi, f) in files.iter().enumerate() {
        let path = dir.join(f);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: invalid safetensors: {e}", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: invalid safetensors header: {e}", path.display()))?;
        if let Some(m) = meta.metadata() {
            metadata.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut names: Vec<(usize, String)> = meta
            .tensors()
            .iter()
            .map(|(n, info)| (info.data_offsets.0, n.clone()))
            .collect();
        names.sort();
        for (_, name) in names {
            let view = st
                .tensor(&name)
                .map_err(|e| anyhow!("{}: tensor {name}: {e}", path.display()))?;
            let dtype = DType::parse(&format!("{:?}", view.dtype()))
                .with_context(|| format!("{}: tensor {name}", path.display()))?;
            let data = if dtype.is_float() {
                Data::F32(decode(dtype, view.data()))
            } else {
                Data::Raw(view.data().to_vec())
            };
            let t = Tensor {
                dtype,
                shape: view.shape().to_vec(),
                data,
            };
            if model.tensors.insert(name.clone(), t).is_some() {
                bail!(
                    "{}: tensor {name} appears in more than one shard",
                    path.display()
                );
            }
            assign.insert(name.clone(), fi);
            order.push(name);
        }
    }
    model.layout = Layout {
        shards: files.len(),
        order,
        assign,
    };
    model.metadata = metadata;
    Ok(model)
}

/// `config.json` (an empty object when absent) and `tokenizer.json`, keeping their bytes so an
/// unchanged value is written back byte for byte.
fn read_config_and_tokenizer(dir: &Path, model: &mut Model) -> Result<()> {
    let cfg_path = dir.join("config.json");
    if cfg_path.exists() {
        let b = fs::read(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let v: Value = serde_json::from_slice(&b)
            .with_context(|| format!("parsing {}", cfg_path.display()))?;
        model.original.insert("config.json".into(), (v.clone(), b));
        model.config = v;
    } else {
        model.config = Value::Object(Default::default());
    }
    let tok_path = dir.join("tokenizer.json");
    if tok_path.exists() {
        let b = fs::read(&tok_path).with_context(|| format!("reading {}", tok_path.display()))?;
        let v: Value = serde_json::from_slice(&b)
            .with_context(|| format!("parsing {}", tok_path.display()))?;
        model
            .original
            .insert("tokenizer.json".into(), (v.clone(), b));
        model.tokenizer = Some(v);
    }
    Ok(())
}

/// Small side files (`tokenizer_config.json`, …) carried over verbatim; weights in other formats
/// and files over [`MAX_SIDE_FILE`] are not.
fn read_side_files(dir: &Path, model: &mut Model) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type()?;
        let skip_ext = [
            ".bin",
            ".pt",
            ".pth",
            ".ckpt",
            ".gguf",
            ".h5",
            ".msgpack",
            ".onnx",
            ".safetensors",
        ];
        if !ft.is_file()
            || skip_ext.iter().any(|x| name.ends_with(x))
            || e.metadata()
                .map(|m| m.len() > MAX_SIDE_FILE)
                .unwrap_or(true)
            || name == "model.safetensors.index.json"
            || name == "config.json"
            || name == "tokenizer.json"
        {
            continue;
        }
        model.files.insert(
            name,
            fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?,
        );
    }
    Ok(())
}

/// Side files larger than this are not carried over by transforms.
pub const MAX_SIDE_FILE: u64 = 64 << 20;

/// All regular files of a folder, sorted, relative names.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}
