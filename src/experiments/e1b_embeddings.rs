//! E1b embeddings by token text: embedding rows of the same token *text* (canonical form, see
//! [`crate::vocab`]) compared across the two vocabularies, never row i against row i, so
//! shifted, permuted, pruned or extended vocabularies still line up.
//!
//! A seeded sample of shared tokens is read by Range. Each matched row pair gives a cosine and a
//! Pearson. Two nulls answer two questions. Random token pairings (a seeded shuffle of B's rows
//! within the sample: same size, no extra reads) ask "do same-text rows match better than
//! random rows?", which unrelated models trained on similar text pass (a direction both
//! embeddings share with token frequency is enough). The claim of derivation is "A and B share
//! a hidden basis", and its null keeps the pairing and B's token geometry and randomises only
//! B's basis (a Haar rotation; the spread is exact, [`stats::rotation_null_sd`]): `basis_z` of
//! the direct comparison, which the strong rule reads. It is taken about each model's mean row,
//! so it measures what the tokens' embeddings share, not a mean direction (the normalised mean
//! embeddings of DistilBERT-cased and all-mpnet-base-v2, unrelated, point within 54° of each
//! other in the same coordinates). Both are computed directly (equal widths only) and after
//! the E8 hidden-dimension alignment ([`crate::hidden_alignment::align_hidden`], one implementation), which is
//! fitted on the even-ranked half of the sample and evaluated on the odd half, so the alignment
//! cannot manufacture similarity on the rows it is judged on. An orthogonal Procrustes map
//! ([`crate::procrustes`]) is fitted and judged the same way: it undoes residual rotations
//! (and, rectangular, slicing) that a permutation cannot. `best` is whichever of the two gives
//! the higher held-out mean Pearson (`alignment_best` says which); `aligned` stays the
//! permutation's, as before. The alignments are fitted only when the pair shares at least
//! [`min_alignment_tokens`] tokens (`alignment_status` says why not otherwise).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::tokens::{VocabCache, min_alignment_tokens, pair_rows};
use super::{Data, Experiment, Output, Plan, Subjects, Table, fmt, round9};
use crate::cka::MatRef;
use crate::hidden_alignment;
use crate::hidden_alignment::DEFAULT_LAP_CAP;
use crate::metrics::{cosine, pearson};
use crate::stats;

/// E1b's parameters (`[params.e1b]`); every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Seed of the token sample and the random pairings.
    pub seed: u64,
    /// Shared tokens sampled per pair.
    pub tokens: usize,
    /// Also compare after the hidden-dimension alignment.
    pub align: bool,
    /// Largest hidden width aligned with the exact assignment (greedy above).
    pub lap_cap: usize,
    /// Widest hidden size the Procrustes alignment is tried at (O(d³); see E8's parameter).
    pub procrustes_max_width: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 0,
            tokens: 4096,
            align: true,
            lap_cap: DEFAULT_LAP_CAP,
            procrustes_max_width: 1024,
        }
    }
}

/// E1b, embeddings: rows of the same token text compared across models, directly and after alignment.
#[derive(Default)]
pub struct Embeddings {
    /// Its parameters.
    pub params: Params,
    vocabs: VocabCache,
}

impl Embeddings {
    /// E1b with `params`.
    pub fn new(params: Params) -> Embeddings {
        Embeddings {
            params,
            vocabs: VocabCache::default(),
        }
    }
}

/// Row-pair statistics of one comparison and its random-pairing null.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RowStats {
    /// Row pairs compared.
    pub n: usize,
    /// Mean raw cosine of same-text rows.
    pub mean_cosine: f64,
    /// Mean Pearson r of same-text rows.
    pub mean_pearson: f64,
    /// Share of rows with Pearson > 0.5.
    pub frac_pearson_gt_half: f64,
    /// Mean raw cosine of randomly paired rows (the null).
    pub null_mean_cosine: f64,
    /// Mean Pearson r of randomly paired rows (the null).
    pub null_mean_pearson: f64,
    /// Standard deviation of the null's Pearson r.
    pub null_sd_pearson: f64,
    /// (mean_pearson − null mean) / (null sd · √(1/n + 1/n_null)): see [`stats::z_mean_vs_null`].
    /// Answers "better than random token pairings?", which unrelated models trained on similar
    /// text pass.
    pub z: f64,
    /// Direct comparison only: the mean cosine of same-text rows taken about each model's mean
    /// row, and its sd when B's hidden basis is a random rotation of itself (pairing and B's
    /// token geometry kept; mean 0), see [`stats::rotation_null_sd`].
    pub basis_mean_cosine: Option<f64>,
    /// Sd of `basis_mean_cosine` under a random rotation of B's hidden basis (direct only).
    pub basis_null_sd: Option<f64>,
    /// `basis_mean_cosine / basis_null_sd`: "do A and B share a hidden basis?", the claim of
    /// derivation.
    pub basis_z: Option<f64>,
}

/// E1b's findings for one pair of models.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair, `A~B`-style.
    pub pair: String,
    /// True for the audited pair (A~B), false for control pairs.
    pub primary: bool,
    /// `ok` or `skipped: <reason>`.
    pub status: String,
    /// Tokens the two vocabularies share (by canonical text).
    pub shared_tokens: usize,
    /// Shared tokens sampled.
    pub sampled: usize,
    /// Share of sampled tokens with the same id in both models.
    pub same_id_fraction: f64,
    /// Row i vs row i of the same text (equal widths only).
    pub direct: Option<RowStats>,
    /// After the hidden-dimension alignment (evaluated on the held-out half).
    pub aligned: Option<RowStats>,
    /// After an orthogonal Procrustes map fitted on the same half (held-out half).
    pub procrustes: Option<RowStats>,
    /// The better of `aligned` and `procrustes` on the held-out rows.
    pub best: Option<RowStats>,
    /// `permutation` or `procrustes`: which alignment gave `best`.
    pub alignment_best: Option<String>,
    /// Mean |cos| of the matched embedding columns of the permutation alignment.
    pub alignment_mean_abs_cos: Option<f64>,
    /// `ok`, `off` (parameter `align`), or `skipped: <reason>` when too few tokens are shared
    /// to fit an alignment ([`min_alignment_tokens`]); `direct` does not need one.
    pub alignment_status: String,
}

/// E1b's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Result1b {
    /// The parameters it ran with.
    pub params: Params,
    /// Each pair's findings, A~B first.
    pub pairs: Vec<PairResult>,
}

/// Matched rows `a[r]`~`b[r]` against `a[r]`~`b[perm[r]]`.
fn row_stats(a: &[f32], b: &[f32], cols: usize, perm: &[usize]) -> RowStats {
    let n = perm.len();
    let row = |m: &'_ [f32], r: usize| -> Vec<f32> { m[r * cols..(r + 1) * cols].to_vec() };
    let (mut c, mut p, mut nc, mut np) = (vec![], vec![], vec![], vec![]);
    for (r, &s) in perm.iter().enumerate() {
        let (ra, rb, rs) = (row(a, r), row(b, r), row(b, s));
        c.push(cosine(&ra, &rb));
        p.push(pearson(&ra, &rb));
        nc.push(cosine(&ra, &rs));
        np.push(pearson(&ra, &rs));
    }
    let finite = |v: Vec<f64>| -> Vec<f64> { v.into_iter().filter(|x| x.is_finite()).collect() };
    let (c, p, nc, np) = (finite(c), finite(p), finite(nc), finite(np));
    let (mp, mnp, snp) = (stats::mean(&p), stats::mean(&np), stats::sample_sd(&np));
    RowStats {
        n,
        mean_cosine: round9(stats::mean(&c)),
        mean_pearson: round9(mp),
        frac_pearson_gt_half: round9(
            p.iter().filter(|x| **x > 0.5).count() as f64 / p.len().max(1) as f64,
        ),
        null_mean_cosine: round9(stats::mean(&nc)),
        null_mean_pearson: round9(mnp),
        null_sd_pearson: round9(snp),
        z: round9(stats::z_mean_vs_null(mp, p.len(), &np)),
        basis_mean_cosine: None,
        basis_null_sd: None,
        basis_z: None,
    }
}

/// [`row_stats`] of rows compared as stored, with the null of an unrelated hidden basis. The
/// basis statistic reads the rows about each model's mean row over the sample: what one token's
/// embedding has of its own. A mean direction that two models share (and that unrelated models
/// can share too) would otherwise dominate it.
fn direct_stats(a: &[f32], b: &[f32], cols: usize, perm: &[usize]) -> RowStats {
    let mut s = row_stats(a, b, cols, perm);
    let rows = perm.len();
    let (ca, cb) = (centred(a, rows, cols), centred(b, rows, cols));
    let cosines: Vec<f64> = (0..rows)
        .map(|r| {
            let span = r * cols..(r + 1) * cols;
            cosine(&ca[span.clone()], &cb[span])
        })
        .filter(|c| c.is_finite())
        .collect();
    let mean = stats::mean(&cosines);
    let sd = stats::rotation_null_sd(&ca, &cb, rows, cols);
    if mean.is_finite() && sd.is_finite() && sd > 0.0 {
        s.basis_mean_cosine = Some(round9(mean));
        s.basis_null_sd = Some(round9(sd));
        s.basis_z = Some(round9(mean / sd));
    }
    s
}

/// The rows minus their mean row.
fn centred(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut mean = vec![0f64; cols];
    for row in m.chunks_exact(cols).take(rows) {
        for (acc, &x) in mean.iter_mut().zip(row) {
            *acc += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|x| *x /= rows.max(1) as f64);
    m.chunks_exact(cols)
        .take(rows)
        .flat_map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&x, &m)| (f64::from(x) - m) as f32)
        })
        .collect()
}

/// A seeded derangement-ish shuffle of `0..n` (a rotation by a seeded offset after a seeded
/// shuffle, so no index maps to itself).
fn null_pairing(n: usize, seed: u64) -> Vec<usize> {
    if n < 2 {
        return (0..n).collect();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| super::tokens::seeded_rank(seed, &format!("null/{i}")));
    // cycle through the shuffled order: every position maps to the next one in it
    let mut perm = vec![0; n];
    for k in 0..n {
        perm[order[k]] = order[(k + 1) % n];
    }
    perm
}

fn select_rows(m: &[f32], cols: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| m[r * cols..(r + 1) * cols].iter().copied())
        .collect()
}

impl Experiment for Embeddings {
    fn id(&self) -> &'static str {
        "e1b"
    }

    fn plan(&self, subjects: &Subjects, plan: &mut Plan) {
        let p = &self.params;
        for (i, j) in subjects.pairs() {
            if let Ok(rows) = pair_rows(subjects, &self.vocabs, i, j, p.tokens, p.seed) {
                plan.add(i, rows.a);
                plan.add(j, rows.b);
            }
        }
    }

    fn run(&self, subjects: &Subjects, data: &Data) -> Result<Output> {
        let mut pairs = Vec::new();
        for (i, j) in subjects.pairs() {
            pairs.push(self.pair(subjects, data, (i, j))?);
        }
        Output::new(
            "e1b",
            &Result1b {
                params: self.params.clone(),
                pairs,
            },
        )
    }
}

impl Embeddings {
    /// One pair's embedding rows compared: as stored, and after each hidden alignment.
    fn pair(&self, subjects: &Subjects, data: &Data, (i, j): (usize, usize)) -> Result<PairResult> {
        let p = &self.params;
        let label = subjects.pair_label(i, j);
        let primary = Subjects::is_primary(i, j);
        let rows = match pair_rows(subjects, &self.vocabs, i, j, p.tokens, p.seed) {
            Ok(r) => r,
            Err(e) => {
                return Ok(PairResult {
                    pair: label,
                    primary,
                    status: format!("skipped: {e}"),
                    shared_tokens: 0,
                    sampled: 0,
                    same_id_fraction: f64::NAN,
                    direct: None,
                    aligned: None,
                    procrustes: None,
                    best: None,
                    alignment_best: None,
                    alignment_mean_abs_cos: None,
                    alignment_status: String::new(),
                });
            }
        };
        let n = rows.tokens.len();
        let (a, b) = (data.get(i, &rows.a)?, data.get(j, &rows.b)?);
        let (ca, cb) = (rows.cols_a, rows.cols_b);
        let same_id = rows.tokens.iter().filter(|t| t.id_a == t.id_b).count() as f64 / n as f64;
        let direct = (ca == cb).then(|| direct_stats(a, b, ca, &null_pairing(n, p.seed)));
        let mut aligned = None;
        let mut procrustes = None;
        let mut mean_abs_cos = None;
        let need = min_alignment_tokens(ca.max(cb));
        let alignment_status = if !p.align {
            "off".to_string()
        } else if rows.shared < need {
            format!(
                "skipped: only {} shared tokens (an alignment of {} dimensions needs {need})",
                rows.shared,
                ca.max(cb)
            )
        } else if n < 16 {
            format!("skipped: only {n} tokens sampled")
        } else {
            "ok".to_string()
        };
        if alignment_status == "ok" {
            (aligned, procrustes, mean_abs_cos) = self.aligned_stats(a, b, (ca, cb), n)?;
        }
        let (best, alignment_best) = match (&aligned, &procrustes) {
            (Some(l), Some(r)) if r.mean_pearson > l.mean_pearson => {
                (Some(r.clone()), Some("procrustes".to_string()))
            }
            (Some(l), _) => (Some(l.clone()), Some("permutation".to_string())),
            _ => (None, None),
        };
        Ok(PairResult {
            pair: label,
            primary,
            status: "ok".into(),
            shared_tokens: rows.shared,
            sampled: n,
            same_id_fraction: round9(same_id),
            direct,
            aligned,
            procrustes,
            best,
            alignment_best,
            alignment_mean_abs_cos: mean_abs_cos,
            alignment_status,
        })
    }

    /// Row statistics after the permutation alignment and (narrow enough models) Procrustes,
    /// both fitted on the even sampled rows and judged on the odd ones; and the permutation's
    /// mean |cos|.
    fn aligned_stats(
        &self,
        a: &[f32],
        b: &[f32],
        (ca, cb): (usize, usize),
        n: usize,
    ) -> Result<AlignedStats> {
        let p = &self.params;
        let mut procrustes = None;
        let fit: Vec<usize> = (0..n).step_by(2).collect();
        let eval: Vec<usize> = (1..n).step_by(2).collect();
        let (fa, fb) = (select_rows(a, ca, &fit), select_rows(b, cb, &fit));
        let al = hidden_alignment::align_hidden(
            MatRef::new(&fa, fit.len(), ca)?,
            MatRef::new(&fb, fit.len(), cb)?,
            p.lap_cap,
        )?;
        let (ea, eb) = (select_rows(a, ca, &eval), select_rows(b, cb, &eval));
        let (ea, eb) = match al.base {
            hidden_alignment::Side::A => (al.apply(MatRef::new(&ea, eval.len(), ca)?)?, eb),
            hidden_alignment::Side::B => (ea, al.apply(MatRef::new(&eb, eval.len(), cb)?)?),
        };
        let aligned = Some(row_stats(
            &ea,
            &eb,
            al.d_target,
            &null_pairing(eval.len(), p.seed),
        ));
        let mean_abs_cos = Some(round9(al.mean_abs_cos));
        if ca.max(cb) <= p.procrustes_max_width {
            let pr = crate::procrustes::align_hidden_procrustes(
                MatRef::new(&fa, fit.len(), ca)?,
                MatRef::new(&fb, fit.len(), cb)?,
            )?;
            let (ea, eb) = (select_rows(a, ca, &eval), select_rows(b, cb, &eval));
            let (ea, eb) = match pr.base {
                hidden_alignment::Side::A => (pr.apply(MatRef::new(&ea, eval.len(), ca)?)?, eb),
                hidden_alignment::Side::B => (ea, pr.apply(MatRef::new(&eb, eval.len(), cb)?)?),
            };
            procrustes = Some(row_stats(
                &ea,
                &eb,
                pr.d_target,
                &null_pairing(eval.len(), p.seed),
            ));
        }
        Ok((aligned, procrustes, mean_abs_cos))
    }
}

/// Row statistics after the permutation alignment and after Procrustes, and the permutation's
/// mean |cos|.
type AlignedStats = (Option<RowStats>, Option<RowStats>, Option<f64>);

/// `e1b_embeddings`, from the result as results.json records it.
pub fn tables(result: &serde_json::Value) -> Result<Vec<Table>> {
    let r: Result1b = super::readback::from_value(result)?;
    let pairs = r.pairs;
    let mut t = Table::new(
        "e1b_embeddings",
        &[
            "pair",
            "primary",
            "status",
            "shared_tokens",
            "sampled",
            "same_id_fraction",
            "comparison",
            "n",
            "mean_cosine",
            "mean_pearson",
            "frac_pearson_gt_half",
            "null_mean_cosine",
            "null_mean_pearson",
            "null_sd_pearson",
            "z",
            "basis_mean_cosine",
            "basis_null_sd",
            "basis_z",
        ],
    );
    for r in &pairs {
        let head = vec![
            r.pair.clone(),
            r.primary.to_string(),
            r.status.clone(),
            r.shared_tokens.to_string(),
            r.sampled.to_string(),
            fmt(r.same_id_fraction),
        ];
        for (name, s) in [
            ("direct", &r.direct),
            ("aligned", &r.aligned),
            ("procrustes", &r.procrustes),
        ] {
            let Some(s) = s else { continue };
            let mut row = head.clone();
            row.extend([
                name.to_string(),
                s.n.to_string(),
                fmt(s.mean_cosine),
                fmt(s.mean_pearson),
                fmt(s.frac_pearson_gt_half),
                fmt(s.null_mean_cosine),
                fmt(s.null_mean_pearson),
                fmt(s.null_sd_pearson),
                fmt(s.z),
                s.basis_mean_cosine.map_or_else(String::new, fmt),
                s.basis_null_sd.map_or_else(String::new, fmt),
                s.basis_z.map_or_else(String::new, fmt),
            ]);
            t.rows.push(row);
        }
    }
    Ok(vec![t])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_stats_z_uses_the_prediction_interval() {
        let (n, cols) = (6, 5);
        let a: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let b: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i * 13 % 7) as f32 - 3.0) / 4.0)
            .collect();
        let s = row_stats(&a, &b, cols, &null_pairing(n, 3));
        let want = (s.mean_pearson - s.null_mean_pearson)
            / (s.null_sd_pearson * (1.0 / n as f64 + 1.0 / n as f64).sqrt());
        assert!(s.null_sd_pearson > 0.0, "{s:?}");
        assert!(
            (s.z - want).abs() < 1e-6 * want.abs().max(1.0),
            "{} vs {want}",
            s.z
        );
    }

    /// Embeddings of `n` tokens in `cols` dims: `f(token)·u + noise`, where `f` is shared by
    /// both models (token frequency) and the direction `u` and the noise are each model's own.
    fn frequency_embeddings(seed: u64, freq: &[f64], cols: usize) -> Vec<f32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut gauss = move || {
            let (u, v) = (1.0 - rng.f64(), rng.f64());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let u: Vec<f64> = (0..cols).map(|_| gauss()).collect();
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        freq.iter()
            .flat_map(|f| {
                u.iter()
                    .map(|x| (f * x / norm + 0.5 * gauss() / (cols as f64).sqrt()) as f32)
                    .collect::<Vec<f32>>()
            })
            .collect()
    }

    #[test]
    fn a_shared_frequency_direction_beats_random_pairings_but_not_a_random_basis() {
        // Unrelated models: each has its own frequency direction, so nothing about their bases
        // is shared, but the same tokens are long or short in both. Random token pairings break
        // that and call it evidence; rotating B's basis keeps it and does not.
        let (n, cols) = (1000, 128);
        // log-frequency about its mean: frequent tokens on one side of the direction, rare on the
        // other (a positive f alone would only scale rows, which cosines ignore)
        let freq: Vec<f64> = (0..n).map(|t| (t % 97) as f64 / 32.0 - 1.5).collect();
        let (mut pairing, mut basis) = (Vec::new(), Vec::new());
        for seed in 0..20 {
            let a = frequency_embeddings(1000 + 7919 * seed, &freq, cols);
            let b = frequency_embeddings(5000 + 104_729 * seed, &freq, cols);
            let s = direct_stats(&a, &b, cols, &null_pairing(n, 3));
            pairing.push(s.z);
            basis.push(s.basis_z.unwrap());
        }
        let worst = |z: &[f64]| z.iter().fold(0.0f64, |w, x| w.max(x.abs()));
        assert!(worst(&pairing) > 10.0, "{pairing:?} {basis:?}");
        assert!(worst(&basis) < 4.0, "{basis:?}");
        // B = A with fine-tuning noise shares A's basis: far beyond either null
        let a = frequency_embeddings(1, &freq, cols);
        let b: Vec<f32> = a
            .iter()
            .zip(frequency_embeddings(9, &freq, cols))
            .map(|(x, y)| x + 0.3 * y)
            .collect();
        let s = direct_stats(&a, &b, cols, &null_pairing(n, 3));
        assert!(s.basis_z.unwrap() > 10.0, "{s:?}");
    }

    #[test]
    fn a_shared_mean_direction_alone_is_not_a_shared_basis() {
        // Unrelated token embeddings around one common mean row (in the same coordinates):
        // the raw mean cosine is large, the rows about their means agree at chance.
        let (n, cols) = (600, 64);
        let freq = vec![0.0; n];
        let common: Vec<f32> = frequency_embeddings(7, &[1.0], cols)
            .iter()
            .map(|x| 4.0 * x)
            .collect();
        let shifted = |seed: u64| -> Vec<f32> {
            frequency_embeddings(seed, &freq, cols)
                .chunks_exact(cols)
                .flat_map(|row| row.iter().zip(&common).map(|(x, c)| x + c))
                .collect()
        };
        let (a, b) = (shifted(11), shifted(12));
        let s = direct_stats(&a, &b, cols, &null_pairing(n, 3));
        assert!(s.mean_cosine > 0.5, "{s:?}");
        assert!(s.basis_z.unwrap().abs() < 4.0, "{s:?}");
    }
}
