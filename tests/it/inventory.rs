//! `audit inventory` and `audit pin` on local folders: make a model, run, compare.

use std::fs;

use weight_audit::arch::Family;
use weight_audit::model::{Model, ModelOptions};
use weight_audit::source::local::LocalSource;

use crate::util::*;

fn open(dir: &std::path::Path) -> Model {
    Model::open(
        Box::new(LocalSource::open(dir).unwrap()),
        &ModelOptions::default(),
    )
    .unwrap()
}

#[test]
fn sharded_and_single_file_inventories_agree_on_everything_but_location() {
    let (a, b) = (tmp(), tmp());
    tiny_glm(a.path(), 3);
    tiny_glm(b.path(), 1);
    let (ma, mb) = (open(a.path()), open(b.path()));
    assert_eq!(ma.shards().len(), 3);
    assert_eq!(mb.shards(), ["model.safetensors"]);
    let strip = |m: &Model| {
        m.tensors()
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone(), t.role.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&ma), strip(&mb));
    assert!(ma.index_problems().is_empty());
    // Reading through the inventory gives back the bytes that were written.
    let want = bf16("model.layers.2.self_attn.k_proj.weight", &[32, 64]);
    let got = ma.read_raw(&[weight_audit::model::ElementRequest {
        tensor: want.name.clone(),
        start: 0,
        count: 32 * 64,
    }]);
    assert_eq!(got.unwrap()[0], want.data);
    let row = mb.read_rows_f32(&want.name, 3, 1).unwrap();
    let all = mb.read_tensor_f32(&want.name).unwrap();
    assert_eq!(row, all[3 * 64..4 * 64]);
}

#[test]
fn inventory_csv_lists_roles_and_absolute_offsets() {
    let dir = tmp();
    tiny_glm(dir.path(), 2);
    let out = run(&["inventory", &path_str(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "name,dtype,shape,numel,file,begin,end,bytes,layer,family,expert,mtp,stack,qkv_split,inferred"
    );
    let model = open(dir.path());
    assert_eq!(lines.len(), model.tensors().len() + 1);
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{name},")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("model.layers.1.mlp.experts.1.down_proj.weight")
            .ends_with(",1,expert_down,1,false,,,false")
    );
    assert!(row("model.layers.3.eh_proj.weight").ends_with(",3,mtp_proj,,true,,,false"));
    assert!(row("model.layers.2.mlp.gate.e_score_correction_bias").contains(",F32,2,2,"));
    // begin/end are absolute: the 8-byte prefix and the header come first.
    let t = model.tensor("model.norm.weight").unwrap();
    assert_eq!(t.role.family, Family::FinalNorm);
    let norm_row = row("model.norm.weight");
    let fields: Vec<&str> = norm_row.split(',').collect();
    assert_eq!(fields[5].parse::<u64>().unwrap(), t.begin);
    let file = fs::read(dir.path().join(&t.file)).unwrap();
    let json_len = u64::from_le_bytes(file[..8].try_into().unwrap());
    assert!(t.begin >= 8 + json_len);
    assert!(
        stderr(&out).contains("tensors in 2 shard(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn index_disagreements_are_reported_not_ignored() {
    let dir = tmp();
    tiny_glm(dir.path(), 2);
    let index_path = dir.path().join("model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let wm = index["weight_map"].as_object_mut().unwrap();
    wm.remove("model.norm.weight");
    wm.insert(
        "model.ghost.weight".into(),
        "model-00001-of-00002.safetensors".into(),
    );
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let problems = open(dir.path()).index_problems().to_vec();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("model.ghost.weight"));
    assert!(
        problems[1].contains("model.norm.weight") && problems[1].contains("missing from the index")
    );
    let out = run(&["inventory", &path_str(dir.path())]);
    assert!(stderr(&out).contains("warning:") && stderr(&out).contains("model.ghost.weight"));
}

#[test]
fn hostile_folders_fail_with_the_file_named() {
    let dir = tmp();
    tiny_glm(dir.path(), 2);
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    let bytes = fs::read(&shard).unwrap();
    fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&["inventory", &path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("past the end"),
        "{err}"
    );

    // An index pointing outside the folder.
    let dir = tmp();
    tiny_glm(dir.path(), 2);
    fs::write(
        dir.path().join("model.safetensors.index.json"),
        br#"{"weight_map":{"x":"../../etc/passwd"}}"#,
    )
    .unwrap();
    let err = stderr(&run(&["inventory", &path_str(dir.path())]));
    assert!(err.contains("unsafe shard path"), "{err}");

    // Only pickles.
    let dir = tmp();
    fs::write(dir.path().join("pytorch_model.bin"), b"not loaded").unwrap();
    let err = stderr(&run(&["inventory", &path_str(dir.path())]));
    assert!(err.contains("never loads"), "{err}");
}

#[test]
fn bad_references_are_usage_errors() {
    let out = run(&["inventory", "zai-org/GLM-4.5-Air"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hf:org/name"));
    let out = run(&["pin"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pin_records_sizes_and_sha256_of_local_files() {
    let dir = tmp();
    tiny_glm(dir.path(), 2);
    let out_file = dir.path().join("revisions.json");
    let out = run(&["pin", &path_str(dir.path()), "--out", &path_str(&out_file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pins: serde_json::Value = serde_json::from_slice(&fs::read(&out_file).unwrap()).unwrap();
    let files = pins["models"][0]["files"].as_array().unwrap();
    let config = files.iter().find(|f| f["path"] == "config.json").unwrap();
    let expected =
        weight_audit::source::local::sha256_file(&dir.path().join("config.json")).unwrap();
    assert_eq!(config["sha256"], expected.as_str());
    assert_eq!(
        config["size"],
        fs::metadata(dir.path().join("config.json")).unwrap().len()
    );
    assert_eq!(pins["models"][0]["kind"], "local");
    assert!(stderr(&out).contains("pin: 1 model(s)"));
}
