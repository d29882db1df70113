//! The section of E3q (re-quantisation identity).

use super::format::num;
use super::section::{Section, TableView};
use crate::experiments::e3q_requant::{PairResult, ResultQ};

fn pair_row(x: &PairResult) -> Vec<String> {
    vec![
        x.pair.clone(),
        x.status.clone(),
        x.quantised.clone(),
        x.schemes.join(", "),
        x.variant.clone(),
        format!("{} in {} tensors", x.blocks, x.tensors),
        format!(
            "{} (null {})",
            num(x.identical_fraction),
            num(x.null_identical_fraction)
        ),
        format!(
            "{} (null {})",
            num(x.near_fraction),
            num(x.null_near_fraction)
        ),
        x.log10_p
            .map_or_else(|| "n/a".into(), |l| format!("10^{l:.0}")),
    ]
}

fn reading(r: &ResultQ) -> String {
    let Some(p) = r.pairs.iter().find(|x| x.primary) else {
        return "No pair was compared.".into();
    };
    if p.status != "ok" {
        return format!("A~B: {}.", p.status);
    }
    format!(
        "Quantising A's rows with {}'s scheme ({}) reproduces {} of {} informative blocks bit for bit ({} of the other layer's blocks, the null); {} more are within one code step.",
        p.quantised,
        p.schemes.join(", "),
        p.identical,
        p.blocks,
        num(p.null_identical_fraction),
        p.near
    )
}

pub fn e3q(result: &ResultQ) -> Section {
    let table = TableView::new(
        "Re-quantisation: do the float side's rows, quantised with the other side's scheme, give its stored blocks?",
        &[
            "pair",
            "status",
            "quantised",
            "schemes",
            "rounding",
            "blocks",
            "identical (null)",
            "within one step (null)",
            "p",
        ],
        result.pairs.iter().map(pair_row).collect(),
        "e3q_pairs",
    );
    Section {
        id: "e3q".into(),
        title: "E3q · Re-quantisation identity".into(),
        nav: String::new(),
        question: "Is the quantised model the float model run through llama.cpp's quantiser: are its blocks, bit for bit, what quantising the other model's rows gives?".into(),
        null: "The same rows quantised the same way against the quantised model's blocks of another layer: what matches there matches without ancestry. The reference quantisers are deterministic, so a plain requant matches every block; a fine-tune or an unrelated model matches at chance.".into(),
        reading: reading(result),
        tables: vec![table],
        plots: Vec::new(),
    }
}
