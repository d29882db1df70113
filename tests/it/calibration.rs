//! The calibration: the committed bank is what a rebuild gives (its synthetic part always,
//! its real part where the real models are downloaded), and every pair of the bank gets the
//! verdict its label calls for when judged leave-one-model-out (by thresholds set without its
//! models), coverage and all.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use weight_audit::bank::{self, BankSuite, Measured};
use weight_audit::calibration::{Calibration, Truth};
use weight_audit::pipeline::RubricSource;
use weight_audit::verdict::{Verdict, decide};

use crate::util::lab_suite;

/// The measured pairs of one bank suite, computed once per test binary.
pub fn measured(suite: &str) -> Option<&'static (BankSuite, Vec<Measured>)> {
    type Cell = OnceLock<(BankSuite, Vec<Measured>)>;
    static LAB: Cell = OnceLock::new();
    static ADVERSARIAL: Cell = OnceLock::new();
    static QUANT: Cell = OnceLock::new();
    static REAL: Cell = OnceLock::new();
    let cell = match suite {
        "lab" => &LAB,
        "adversarial" => &ADVERSARIAL,
        "quant" => &QUANT,
        "real" => {
            crate::real::real_root()?;
            &REAL
        }
        other => panic!("no bank suite {other}"),
    };
    Some(cell.get_or_init(|| {
        let bank = if suite == "lab" {
            // The lab suite the other tests share (the default width, as calibrate makes it).
            BankSuite::folder("lab", &lab_suite().0)
        } else {
            let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("calibration-suites");
            bank::prepare_suite(suite, &work).unwrap()
        };
        let ids: Vec<_> = weight_audit::experiments::registry::eval_ids()
            .iter()
            .map(|i| weight_audit::experiments::by_id(i).unwrap())
            .collect();
        // Of the real bank, the tests re-measure the pairs of all-MiniLM-L6-v2, its fine-tune,
        // all-mpnet-base-v2 and the whisper-base copies (r1–r6); the other real pairs (`ri-*`,
        // about 10 minutes more) are checked from their committed values below.
        let m = bank::measure_where(&bank, &ids, &|id| !id.starts_with("ri-")).unwrap();
        (bank, m)
    }))
}

fn committed() -> RubricSource {
    RubricSource::load(None).unwrap()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 + 1e-6 * x.abs().max(y.abs()),
        _ => false,
    }
}

/// Rebuilds one suite's part of the bank and compares it with the committed calibration.
fn rebuild_matches(suite: &str) {
    let Some((bank, m)) = measured(suite) else {
        return;
    };
    let source = committed();
    let rebuilt = bank::build(
        &source.rubric,
        "rebuild",
        bank::bank_models(bank).unwrap(),
        m,
    )
    .unwrap();
    let cal = &source.calibration;
    let index: BTreeMap<&str, usize> = cal
        .pairs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    // The real part is re-measured only for the pairs the tests measure (see `measured`).
    if suite != "real" {
        let prefix = format!("{suite}:");
        assert_eq!(
            cal.pairs
                .iter()
                .filter(|p| p.id.starts_with(&prefix))
                .count(),
            rebuilt.pairs.len(),
            "the committed calibration's {suite} pairs differ in number from a rebuild: rebuild it (README, Calibration)"
        );
    }
    for model in &rebuilt.models {
        let c = cal
            .model(&model.id)
            .unwrap_or_else(|| panic!("model {} is not in the committed calibration", model.id));
        assert_eq!(c, model, "model {} differs from a rebuild", model.id);
    }
    let mut differences = Vec::new();
    for (k, pair) in rebuilt.pairs.iter().enumerate() {
        let i = *index
            .get(pair.id.as_str())
            .unwrap_or_else(|| panic!("pair {} is not in the committed calibration", pair.id));
        assert_eq!(&cal.pairs[i], pair);
        for rule in &rebuilt.rules {
            let committed = cal.values_of(&rule.rule).unwrap_or_else(|| {
                panic!("rule {} is not in the committed calibration", rule.rule)
            });
            assert_eq!(committed.selector, rule.selector, "rule {}", rule.rule);
            if !close(committed.values[i], rule.values[k]) {
                differences.push(format!(
                    "{} {}: committed {:?}, rebuilt {:?}",
                    pair.id, rule.rule, committed.values[i], rule.values[k]
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "the committed calibration differs from a rebuild of its {suite} part in {} place(s) (rebuild it: README, Calibration):\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn the_committed_calibration_matches_a_rebuild_of_its_lab_part() {
    rebuild_matches("lab");
}

#[test]
fn the_committed_calibration_matches_a_rebuild_of_its_adversarial_part() {
    rebuild_matches("adversarial");
}

#[test]
fn the_committed_calibration_matches_a_rebuild_of_its_quant_part() {
    rebuild_matches("quant");
}

#[test]
fn the_committed_calibration_matches_a_rebuild_of_its_real_part() {
    rebuild_matches("real");
}

/// Every pair of the committed bank, real ones included, judged from its recorded values by
/// the calibration less its own models: independent pairs acquitted, derived ones accused.
#[test]
fn every_bank_pair_gets_its_verdict_from_its_values_leave_one_model_out() {
    let source = committed();
    let cal = &source.calibration;
    let verdicts = weight_audit::verdict::bank_verdicts(&source.rubric, cal);
    let wrong: Vec<String> = cal
        .pairs
        .iter()
        .zip(&verdicts)
        .filter(|(p, v)| match p.truth {
            Truth::Derived => !v.is_derived(),
            Truth::Independent => **v != Verdict::NotSupported,
        })
        .map(|(p, v)| format!("{} ({:?}): {}", p.id, p.truth, v.label()))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // The bank holds real hard negatives, not only the lab's.
    let real_independent = (0..cal.pairs.len())
        .filter(|i| cal.is_real(*i) && cal.pairs[*i].truth == Truth::Independent)
        .count();
    assert!(
        real_independent >= 20,
        "{real_independent} real independent pairs"
    );
}

#[test]
fn the_calibration_rebuild_is_deterministic_text() {
    let Some((bank, m)) = measured("adversarial") else {
        return;
    };
    let source = committed();
    let build = || {
        bank::build(&source.rubric, "v", bank::bank_models(bank).unwrap(), m)
            .unwrap()
            .to_text()
            .unwrap()
    };
    let text = build();
    assert_eq!(text, build());
    assert_eq!(Calibration::parse(&text).unwrap().to_text().unwrap(), text);
    // No machine's paths in it.
    assert!(
        !text.contains(env!("CARGO_TARGET_TMPDIR")),
        "a path leaked into the bank"
    );
}

/// Every pair of a suite, judged as an audit is (coverage included) by the calibration less
/// its own models: derived pairs accused, independent ones acquitted.
fn judged_right(suite: &str) {
    let Some((_, m)) = measured(suite) else {
        return;
    };
    let source = committed();
    let mut wrong = Vec::new();
    for x in m {
        let excluded = [x.pair.a.as_str(), x.pair.b.as_str()];
        let d = decide(
            &source.rubric,
            &source.calibration,
            &x.results,
            &[],
            &excluded,
        );
        let ok = match x.pair.truth {
            Truth::Derived => d.verdict.is_derived(),
            Truth::Independent => d.verdict == Verdict::NotSupported,
        };
        if !ok {
            wrong.push(format!(
                "{} ({}, {:?}): {} because {:?}",
                x.pair.id,
                x.pair.relation,
                x.pair.truth,
                d.verdict.label(),
                d.reasons
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_lab_pair_gets_its_verdict_leave_one_model_out() {
    judged_right("lab");
}

#[test]
fn every_adversarial_pair_gets_its_verdict_leave_one_model_out() {
    judged_right("adversarial");
}

#[test]
fn every_quant_pair_gets_its_verdict_leave_one_model_out() {
    judged_right("quant");
}

#[test]
fn every_real_pair_gets_its_verdict_leave_one_model_out() {
    judged_right("real");
}

fn open(dir: &Path) -> weight_audit::model::Model {
    weight_audit::model::Model::open(
        Box::new(weight_audit::source::local::LocalSource::open(dir).unwrap()),
        &weight_audit::model::ModelOptions::default(),
    )
    .unwrap()
}

fn verdict_of(a: &Path, b: &Path) -> weight_audit::verdict::Decision {
    let ids: Vec<String> = weight_audit::experiments::registry::default_ids();
    let (ma, mb) = (open(a), open(b));
    let refs = vec!["A".to_string(), "B".to_string()];
    weight_audit::pipeline::compare_models(&ma, &mb, &[], &refs, &ids, &committed())
        .unwrap()
        .0
        .decision
}

/// The GLM-4.5-Air, Solar-Open-100B and Phi-3.5-MoE replicas (independent by construction:
/// each model's weights are drawn from its own seeds): GLM is acquitted against Solar and
/// against Phi without controls, and the verdict says what it examined.
#[test]
fn the_glm_solar_and_phi_replicas_are_not_supported_without_controls() {
    let d = tempfile::tempdir().unwrap();
    let out = weight_audit_lab::replica(
        d.path(),
        &weight_audit_lab::ReplicaOptions {
            hidden: 128,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(out[2].name, "phi-3.5-moe");
    for other in [&out[1], &out[2]] {
        let decision = verdict_of(&out[0].dir, &other.dir);
        assert_eq!(
            decision.verdict,
            Verdict::NotSupported,
            "{}: {:?}\n{}",
            other.name,
            decision.reasons,
            decision.coverage.statement
        );
        assert!(decision.coverage.assessed);
        assert!(decision.coverage.statement.starts_with("examined: "));
        assert!(
            decision.error.false_positive_bound > 0.0 && decision.error.false_positive_bound < 0.1
        );
    }
}

/// Two independent models whose every tensor is renamed to nonsense: nothing can be placed,
/// no decisive experiment runs, and the verdict says so instead of acquitting.
#[test]
fn models_whose_tensors_cannot_be_placed_are_inconclusive_not_acquitted() {
    use safetensors::SafeTensors;
    let (dir, _) = lab_suite();
    let d = tempfile::tempdir().unwrap();
    let mut renamed = Vec::new();
    for name in ["llama-a", "llama-b"] {
        let src = dir.join("models").join(name);
        let src = if src.is_dir() { src } else { dir.join(name) };
        let dst = d.path().join(name);
        std::fs::create_dir_all(&dst).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            if src.join(f).is_file() {
                std::fs::copy(src.join(f), dst.join(f)).unwrap();
            }
        }
        // Every tensor of every shard, renamed to its sorted position: no name, no index.
        let mut shards: Vec<Vec<u8>> = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        for f in &files {
            shards.push(std::fs::read(f).unwrap());
        }
        let parsed: Vec<SafeTensors> = shards
            .iter()
            .map(|b| SafeTensors::deserialize(b).unwrap())
            .collect();
        let mut all: Vec<(String, safetensors::tensor::TensorView)> =
            parsed.iter().flat_map(|st| st.tensors()).collect();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        let views: Vec<(String, safetensors::tensor::TensorView)> = all
            .into_iter()
            .enumerate()
            .map(|(i, (_, v))| (format!("p{i:04}"), v))
            .collect();
        safetensors::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
        renamed.push(dst);
    }
    let decision = verdict_of(&renamed[0], &renamed[1]);
    assert_eq!(
        decision.verdict,
        Verdict::Inconclusive,
        "{:?}",
        decision.reasons
    );
    assert!(!decision.coverage.assessed);
    assert!(
        decision.coverage.statement.contains("not assessed"),
        "{}",
        decision.coverage.statement
    );
    assert!(decision.reasons.iter().any(|r| r.contains("not assessed")));
}
