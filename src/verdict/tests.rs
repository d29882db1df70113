use super::*;
use crate::calibration::{BankModel, BankPair, FORMAT, Origin, PairKind, RuleValues, Truth};
use crate::rubric::tests::{RULES, results, rubric};

/// A bank: `independent` p-values for "align" and cosines for "cosine", each pair made of
/// two models of its own; `derived` p-values likewise.
fn bank(r: &Rubric, independent: &[(f64, f64)], derived: &[f64]) -> Calibration {
    let mut models = Vec::new();
    let mut pairs = Vec::new();
    let (mut align, mut cosine) = (Vec::new(), Vec::new());
    let all = independent
        .iter()
        .map(|(p, c)| (Truth::Independent, *p, Some(*c)))
        .chain(derived.iter().map(|p| (Truth::Derived, *p, None)));
    for (i, (truth, p, c)) in all.enumerate() {
        for side in ["a", "b"] {
            models.push(BankModel {
                id: format!("m{i}{side}"),
                origin: if i % 2 == 0 {
                    Origin::Real
                } else {
                    Origin::Synthetic
                },
                pin: "test".into(),
                sha256: "0".repeat(64),
            });
        }
        pairs.push(BankPair {
            id: format!("p{i}"),
            a: format!("m{i}a"),
            b: format!("m{i}b"),
            truth,
            relation: "test".into(),
            kind: PairKind {
                widths: Some([64 * (1 + i as u64 % 2); 2]),
                model_types: None,
            },
        });
        align.push(Some(p));
        cosine.push(c);
    }
    Calibration {
        format: FORMAT.into(),
        version: "test".into(),
        models,
        pairs,
        rules: vec![
            RuleValues {
                rule: "align".into(),
                selector: r.rules[0].selector(),
                values: align,
            },
            RuleValues {
                rule: "cosine".into(),
                selector: r.rules[1].selector(),
                values: cosine,
            },
        ],
    }
}

/// Independent p-values 10^-0.1 … 10^-1.2 (scores 0.1 … 1.2: mean 0.65, sd 0.3606) and
/// cosines 0.96 … 0.99; derived p-values far below.
fn standard(r: &Rubric) -> Calibration {
    let independent: Vec<(f64, f64)> = (1..=12)
        .map(|k| (10f64.powf(-0.1 * k as f64), 0.96 + 0.0025 * k as f64))
        .collect();
    bank(r, &independent, &[1e-30, 1e-40])
}

fn parsed() -> Rubric {
    Rubric::parse(&rubric(RULES)).unwrap()
}

#[test]
fn thresholds_come_from_the_independent_pairs_at_the_allotted_rate() {
    let r = parsed();
    let cal = standard(&r);
    // One strong group with one rule: its share is the whole family rate, 1 %, so the
    // threshold is mean + √99 · sd in −log10 units.
    let rates = rule_rates(&r);
    assert_eq!(rates["align"], 0.01);
    assert_eq!(rates["cosine"], 0.05);
    let scores: Vec<f64> = (1..=12).map(|k| 0.1 * k as f64).collect();
    let (m, sd) = (stats::mean(&scores), stats::sample_sd(&scores));
    let want = m + 99f64.sqrt() * sd;
    let d = decide(&r, &cal, &results(1e-3, 0.5, 0.5), &[], &[]);
    let e = &d.evidence[0];
    assert!(e.calibration.calibrated, "{e:?}");
    assert_eq!(e.calibration.independent_pairs, 12);
    assert_eq!(e.calibration.independent_real, 6);
    // Thresholds are recorded to nine significant digits.
    assert!(
        (e.threshold / 10f64.powf(-want) - 1.0).abs() < 1e-8,
        "{}",
        e.threshold
    );
    // Beyond unrelated at 5 %: mean + √19 · sd.
    let beyond = m + 19f64.sqrt() * sd;
    assert!((e.calibration.beyond_unrelated_threshold / 10f64.powf(-beyond) - 1.0).abs() < 1e-8);
    // p = 1e-3 (score 3) lies between the two: beyond the unrelated range, not accusing.
    assert_eq!(e.level, Level::BeyondUnrelated);
    assert_eq!(d.verdict, Verdict::Inconclusive, "{:?}", d.reasons);
}

#[test]
fn the_verdict_accuses_acquits_and_stays_inconclusive_as_the_calibration_says() {
    let r = parsed();
    let cal = standard(&r);
    let verdict = |p: f64, cos: f64| decide(&r, &cal, &results(p, 0.5, cos), &["A~C1".into()], &[]);
    // Far beyond every unrelated pair: one group accuses.
    let d = verdict(1e-12, 0.5);
    assert_eq!(d.verdict, Verdict::LikelyDerived, "{:?}", d.reasons);
    assert_eq!(d.evidence[0].level, Level::Accuses);
    // Inside the unrelated range (p = 0.1 is what unrelated pairs give): acquitted.
    let d = verdict(0.1, 0.5);
    assert_eq!(d.verdict, Verdict::NotSupported, "{:?}", d.reasons);
    // A weak cosine of 0.985 is past its floor (0.95) but unrelated pairs reach 0.99: it
    // moves nothing.
    let d = verdict(0.1, 0.985);
    assert_eq!(d.evidence[1].level, Level::WithinUnrelated);
    assert_eq!(d.verdict, Verdict::NotSupported);
    // Far beyond the unrelated cosines, it makes the verdict INCONCLUSIVE, never more.
    let d = verdict(0.1, 1.2);
    assert_eq!(d.evidence[1].level, Level::BeyondUnrelated);
    assert_eq!(d.verdict, Verdict::Inconclusive);
    // The bound is stated: the family rate against the bank's leave-one-model-out count.
    assert_eq!(d.error.family_rate, 0.01);
    assert_eq!(d.error.validation.independent_pairs, 12);
    assert_eq!(d.error.validation.derived_detected, 2);
    assert!(d.error.false_positive_bound >= 0.01);
    assert!(
        d.error.statement.contains("12 independent pairs"),
        "{}",
        d.error.statement
    );
    assert!(d.meaning.contains("direction"));
}

#[test]
fn a_control_reaching_the_same_level_vetoes_and_a_missing_one_is_reported() {
    let r = parsed();
    let cal = standard(&r);
    let controls = ["A~C1".to_string()];
    let d = decide(&r, &cal, &results(1e-12, 1e-12, 0.5), &controls, &[]);
    assert_eq!(d.evidence[0].controls_passing, controls.to_vec());
    assert!(!d.evidence[0].fired);
    assert_ne!(d.verdict, Verdict::LikelyDerived);
    assert!(
        d.reasons.iter().any(|x| x.contains("vetoed")),
        "{:?}",
        d.reasons
    );
    // A control the rule has no value for is named, not silently passed over.
    let d = decide(&r, &cal, &results(1e-12, 0.5, 0.5), &["A~C2".into()], &[]);
    assert_eq!(
        d.evidence[0].controls_not_evaluated,
        vec!["A~C2".to_string()]
    );
    assert_eq!(d.verdict, Verdict::LikelyDerived);
}

#[test]
fn too_few_calibration_pairs_cannot_accuse_and_say_so() {
    let r = parsed();
    // Three independent pairs where the rubric asks for four.
    let cal = bank(&r, &[(0.5, 0.97), (0.3, 0.98), (0.2, 0.97)], &[1e-30]);
    let d = decide(&r, &cal, &results(1e-12, 0.5, 0.5), &[], &[]);
    assert!(!d.evidence[0].calibration.calibrated);
    assert!(
        d.evidence[0].calibration.status.contains("3 independent"),
        "{:?}",
        d.evidence[0].calibration
    );
    assert_eq!(d.verdict, Verdict::Inconclusive);
    // A rule whose selector changed since the calibration is not calibrated by it.
    let mut cal = standard(&r);
    cal.rules[0].selector = "other".into();
    let d = decide(&r, &cal, &results(1e-12, 0.5, 0.5), &[], &[]);
    assert!(d.evidence[0].calibration.status.contains("other values"));
    assert_eq!(d.verdict, Verdict::Inconclusive);
}

#[test]
fn nothing_examined_is_not_an_acquittal() {
    let r = parsed();
    let cal = standard(&r);
    // No e4 result at all: no rule fires, but nothing decisive ran either.
    let mut res = results(0.5, 0.5, 0.5);
    res.remove("e4");
    let d = decide(&r, &cal, &res, &[], &[]);
    assert_eq!(d.verdict, Verdict::Inconclusive);
    assert!(!d.coverage.assessed);
    assert!(
        d.coverage.statement.contains("not assessed")
            && d.coverage.statement.contains("e4: not run"),
        "{}",
        d.coverage.statement
    );
    // With it, the same values acquit and say what was examined.
    let d = decide(&r, &cal, &results(0.5, 0.5, 0.5), &[], &[]);
    assert_eq!(d.verdict, Verdict::NotSupported);
    assert!(
        d.coverage.statement.contains("e4 (2 units)"),
        "{}",
        d.coverage.statement
    );
}

#[test]
fn leave_one_model_out_judges_each_bank_pair_without_its_models() {
    let r = parsed();
    // Eleven ordinary independent pairs and one with an outlying p-value: in-sample the
    // outlier sets the threshold; left out, it is judged by the others and accused.
    let mut independent: Vec<(f64, f64)> = (1..=11)
        .map(|k| (10f64.powf(-0.1 * k as f64), 0.97))
        .collect();
    independent.push((1e-20, 0.97));
    // (The outlier widens the spread: a derived pair needs p = 1e-80 to stand beyond it.)
    let cal = bank(&r, &independent, &[1e-80]);
    let verdicts = bank_verdicts(&r, &cal);
    assert_eq!(verdicts[11], Verdict::LikelyDerived);
    assert!(
        verdicts[..11].iter().all(|v| *v == Verdict::NotSupported),
        "{verdicts:?}"
    );
    let v = validate_bank(&r, &cal);
    assert_eq!((v.independent_accused, v.independent_pairs), (1, 12));
    assert_eq!((v.derived_detected, v.derived_pairs), (1, 1));
    assert!((v.accused_upper - stats::clopper_pearson_upper(1, 12, 0.95)).abs() < 1e-12);
    // decide() with the outlier's models excluded reproduces its bank verdict.
    let outlier: BTreeMap<String, Value> = results(1e-20, 0.5, 0.97);
    let d = decide(&r, &cal, &outlier, &[], &["m11a", "m11b"]);
    assert_eq!(d.verdict, Verdict::LikelyDerived);
    // In sample it is the largest independent value, so it sets the range it lies in.
    let d = decide(&r, &cal, &outlier, &[], &[]);
    assert_eq!(d.evidence[0].level, Level::WithinUnrelated);
    // Per rule: one false positive of twelve.
    assert_eq!(d.evidence[0].calibration.lomo_false_positives, 1);
    assert_eq!(d.evidence[0].calibration.lomo_independent, 12);
}

#[test]
fn correlated_rules_share_a_group_and_count_once() {
    // Two strong rules on the same layer alignment: in one group they make LIKELY DERIVED
    // (the old ladder counted them as two experiments and said DERIVED); in two groups,
    // DERIVED. Their rate is split between them either way.
    let second = r#"
[[rule]]
id = "windows"
experiment = "e5"
list = "rows"
value = "z"
aggregate = "mean"
op = ">"
threshold = 10.0
group = "GROUP"
strength = "strong"
explain = "windows line up"
"#;
    let results = {
        let mut m = results(1e-12, 0.5, 0.5);
        m.insert(
            "e5".into(),
            serde_json::json!({"rows": [{"pair": "A~B", "z": 500.0}]}),
        );
        m
    };
    for (group, want, rate) in [
        ("e4", Verdict::LikelyDerived, 0.005),
        ("windows", Verdict::Derived, 0.005),
    ] {
        let text = rubric(&format!("{RULES}{}", second.replace("GROUP", group)));
        let r = Rubric::parse(&text).unwrap();
        let mut cal = standard(&r);
        cal.rules.push(RuleValues {
            rule: "windows".into(),
            selector: r.rules[2].selector(),
            values: (0..cal.pairs.len())
                .map(|i| Some(if i < 12 { (i % 3) as f64 } else { 900.0 }))
                .collect(),
        });
        let d = decide(&r, &cal, &results, &[], &[]);
        assert_eq!(d.verdict, want, "group {group}: {:?}", d.reasons);
        assert_eq!(rule_rates(&r)["align"], rate);
    }
}

/// E0's config rows for A~B as the experiment writes them (values as JSON text).
fn with_configs(
    mut res: BTreeMap<String, Value>,
    width_a: u64,
    width_b: u64,
) -> BTreeMap<String, Value> {
    use crate::experiments::e0_config::{Result0, test_pair};
    let (wa, wb) = (width_a.to_string(), width_b.to_string());
    let e0 = Result0 {
        params: Default::default(),
        pairs: vec![
            test_pair("A~C1", false, &[("hidden_size", "1", "2")]),
            test_pair(
                "A~B",
                true,
                &[
                    ("hidden_size", &wa, &wb),
                    ("model_type", "\"llama\"", "\"bert\""),
                ],
            ),
        ],
    };
    res.insert("e0".into(), serde_json::to_value(&e0).unwrap());
    res
}

#[test]
fn the_pair_kind_comes_from_e0_and_counts_the_calibration_pairs_of_that_kind() {
    let r = parsed();
    let cal = standard(&r);
    let of_widths = |r: &Rubric, a: u64, b: u64| {
        decide(
            r,
            &cal,
            &with_configs(results(0.1, 0.5, 0.5), a, b),
            &[],
            &[],
        )
    };
    // The bank's 14 pairs alternate widths 64 and 128; of the 12 independent ones, 6 are 64.
    let d = of_widths(&r, 64, 64);
    assert_eq!(d.kind.widths, Some([64, 64]));
    assert_eq!(
        d.kind.model_types,
        Some(["bert".to_string(), "llama".to_string()])
    );
    let c = &d.evidence[0].calibration;
    assert_eq!(c.independent_same_widths, Some(6));
    assert_eq!(c.independent_same_model_types, Some(0));
    // 6 is enough for this rubric (4): no warning…
    assert!(
        d.kind_statement.contains("align 6 of 12") && !d.kind_statement.contains("Fewer"),
        "{}",
        d.kind_statement
    );
    // …and too few for one that asks for 10 of the kind.
    let mut strict = r.clone();
    strict.calibration.min_independent = 10;
    let d = of_widths(&strict, 64, 64);
    assert!(
        d.kind_statement
            .contains("Fewer than 10 of its widths for align"),
        "{}",
        d.kind_statement
    );
    // A width the bank does not hold: none of that kind.
    let d = of_widths(&r, 100, 64);
    assert_eq!(d.kind.widths, Some([64, 100]));
    assert_eq!(d.evidence[0].calibration.independent_same_widths, Some(0));
    // Without E0 the kind is unknown and the statement says the pairs cannot be matched.
    let d = decide(&r, &cal, &results(0.1, 0.5, 0.5), &[], &[]);
    assert_eq!(d.kind, PairKind::default());
    assert_eq!(d.evidence[0].calibration.independent_same_widths, None);
    assert!(
        d.kind_statement.contains("cannot be matched"),
        "{}",
        d.kind_statement
    );
}
