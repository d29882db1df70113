//! Lining up tensors of two models by role (family, layer, expert), never by name.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::Sample;
use crate::arch::{Family, QkvPart, Stack};
use crate::model::{Model, TensorInfo};

/// Where a tensor sits in the architecture, whatever its name: the key experiments pair tensors by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RoleKey {
    /// What the tensor is for.
    pub family: Family,
    /// Layer key, if in a layer.
    pub layer: Option<u32>,
    /// Routed expert index, if an expert's.
    pub expert: Option<u32>,
    /// Keeps an encoder's and a decoder's layerless tensors (final norms) apart.
    pub stack: Stack,
}

impl fmt::Display for RoleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.family)?;
        if let Some(l) = self.layer {
            write!(f, "/L{l}")?;
        }
        if let Some(e) = self.expert {
            write!(f, "/E{e}")?;
        }
        if self.stack != Stack::Main && self.layer.is_none() {
            write!(f, "/{}", self.stack.as_str())?;
        }
        Ok(())
    }
}

/// Tensors by role, leaving out MTP layers, buffers and unclassified names (they have no
/// counterpart to line up with). If two tensors claim one role, the first by name wins.
pub fn by_role(model: &Model) -> BTreeMap<RoleKey, &TensorInfo> {
    let mut map = BTreeMap::new();
    for t in model.tensors() {
        if t.role.mtp || matches!(t.role.family, Family::Other | Family::Buffer) {
            continue;
        }
        let key = RoleKey {
            family: t.role.family,
            layer: t.role.layer,
            expert: t.role.expert,
            stack: t.role.stack,
        };
        map.entry(key).or_insert(t);
    }
    map
}

/// Per family: layer index → tensor, for layered, non-expert tensors.
pub fn layers_of(model: &Model, family: Family) -> BTreeMap<u32, &TensorInfo> {
    by_role(model)
        .into_iter()
        .filter(|(k, _)| k.family == family && k.expert.is_none())
        .filter_map(|(k, t)| k.layer.map(|l| (l, t)))
        .collect()
}

/// A projection matrix as rows of a stored tensor: the whole tensor, or the Q, K or V rows of a
/// fused q/k/v tensor whose layout is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Proj<'m> {
    /// The stored tensor.
    pub tensor: &'m TensorInfo,
    /// The stored rows that make up the matrix, as ascending `(first row, count)` runs.
    pub runs: Vec<(u64, u64)>,
    /// Columns (the input width).
    pub cols: u64,
}

impl<'m> Proj<'m> {
    /// The whole tensor, all rows.
    pub fn whole(t: &'m TensorInfo) -> Proj<'m> {
        let (rows, cols) = t.rows_cols();
        Proj {
            tensor: t,
            runs: vec![(0, rows)],
            cols,
        }
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }

    /// Elements of the matrix.
    pub fn numel(&self) -> u64 {
        self.rows() * self.cols
    }

    /// Whether it is a part of a fused tensor.
    pub fn is_part(&self) -> bool {
        self.rows() != self.tensor.rows_cols().0
    }

    /// Stored bytes of the matrix.
    pub fn bytes(&self) -> u64 {
        self.tensor.dtype.bytes_for(self.numel())
    }

    /// The sample reading `windows` of the matrix's elements (row-major, as if it were stored
    /// alone): each window is cut where the matrix's rows jump in the stored tensor.
    pub fn sample(&self, windows: &[(u64, u64)]) -> Sample {
        Sample {
            tensor: self.tensor.name.clone(),
            windows: element_windows(&self.runs, self.cols, windows),
        }
    }
}

/// Maps element windows of the matrix made of `runs` of stored rows (`cols` wide) onto element
/// windows of the stored tensor, in order.
pub fn element_windows(runs: &[(u64, u64)], cols: u64, windows: &[(u64, u64)]) -> Vec<(u64, u64)> {
    // each run: (first element in the matrix, first element stored, elements)
    let mut spans = Vec::with_capacity(runs.len());
    let mut at = 0u64;
    for &(row, n) in runs {
        spans.push((at, row * cols, n * cols));
        at += n * cols;
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(start, len) in windows {
        let end = start.saturating_add(len).min(at);
        let mut s = start;
        for &(m0, s0, n) in &spans {
            if s >= end {
                break;
            }
            if s >= m0 + n {
                continue;
            }
            let take = (m0 + n).min(end) - s;
            let stored = s0 + (s - m0);
            match out.last_mut() {
                Some(last) if last.0 + last.1 == stored => last.1 += take,
                _ => out.push((stored, take)),
            }
            s += take;
        }
    }
    out
}

/// Per layer, the Q, K or V projection (`family` AttnQ/AttnK/AttnV, 2-D), from its own tensor or
/// from the rows of a fused q/k/v tensor with a known layout; other families: their tensors whole.
pub fn projections_of(model: &Model, family: Family) -> BTreeMap<u32, Proj<'_>> {
    let part = match family {
        Family::AttnQ => Some(QkvPart::Q),
        Family::AttnK => Some(QkvPart::K),
        Family::AttnV => Some(QkvPart::V),
        _ => None,
    };
    let mut out: BTreeMap<u32, Proj> = layers_of(model, family)
        .into_iter()
        .filter(|(_, t)| t.shape.len() == 2 || part.is_none())
        .map(|(l, t)| (l, Proj::whole(t)))
        .collect();
    let Some(part) = part else { return out };
    for (l, t) in layers_of(model, Family::AttnQkv) {
        if let (Some(layout), [_, cols]) = (t.role.qkv, t.shape.as_slice()) {
            out.entry(l).or_insert_with(|| Proj {
                tensor: t,
                runs: layout.runs(part),
                cols: *cols,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_windows_follow_the_runs() {
        // rows 0-1 and 4-5 of a 3-column tensor make a 4×3 matrix
        let runs = [(0, 2), (4, 2)];
        assert_eq!(element_windows(&runs, 3, &[(0, 12)]), vec![(0, 6), (12, 6)]);
        // a window crossing the jump is cut there; one past the end is clipped
        assert_eq!(element_windows(&runs, 3, &[(4, 4)]), vec![(4, 2), (12, 2)]);
        assert_eq!(element_windows(&runs, 3, &[(10, 9)]), vec![(16, 2)]);
        // adjacent runs merge into one window
        assert_eq!(
            element_windows(&[(0, 1), (1, 1)], 3, &[(0, 6)]),
            vec![(0, 6)]
        );
        assert_eq!(
            element_windows(&runs, 3, &[(1, 1), (7, 2)]),
            vec![(1, 1), (13, 2)]
        );
    }
}
