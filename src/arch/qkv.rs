//! How the rows of a fused q/k/v projection split into Q, K and V.
//!
//! Layouts in the wild (rows of the `[rows, hidden]` weight):
//! - blocks `[Q; K; V]`: Phi-3 `qkv_proj`, MPT `Wqkv`, Falcon-7B (`multi_query`: one K and one V
//!   head after all query heads);
//! - grouped per key/value head, `[q heads of the group; k; v]` per group: GPT-NeoX and BLOOM
//!   (one query head per group, i.e. per-head interleaved), Falcon-40B/180B
//!   (`new_decoder_architecture`, several query heads per group), Falcon-RW (per head).
//!
//! GPT-2's `c_attn` is a Conv1D `[hidden, 3·hidden]` that splits by columns; it gets no layout.

use serde::Serialize;

use super::ArchHints;

/// How a fused q/k/v tensor's rows split into the three projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum QkvLayout {
    /// `q_rows` query rows, then `kv_rows` key rows, then `kv_rows` value rows.
    Blocks {
        /// Query rows.
        q_rows: u64,
        /// Key rows, and as many value rows.
        kv_rows: u64,
    },
    /// `groups` groups of `(q_per_group + 2)·head_dim` rows: the group's query heads, one key
    /// head, one value head.
    Grouped {
        /// Number of key/value heads, each a group.
        groups: u64,
        /// Query heads per group.
        q_per_group: u64,
        /// Rows per head.
        head_dim: u64,
    },
}

/// One of the three projections a fused tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvPart {
    /// The query projection.
    Q,
    /// The key projection.
    K,
    /// The value projection.
    V,
}

impl QkvLayout {
    /// Total rows of the fused tensor.
    pub fn rows(self) -> u64 {
        match self {
            QkvLayout::Blocks { q_rows, kv_rows } => q_rows + 2 * kv_rows,
            QkvLayout::Grouped {
                groups,
                q_per_group,
                head_dim,
            } => groups * (q_per_group + 2) * head_dim,
        }
    }

    /// The stored rows of one part as `(first row, count)` runs in ascending order.
    pub fn runs(self, part: QkvPart) -> Vec<(u64, u64)> {
        match self {
            QkvLayout::Blocks { q_rows, kv_rows } => vec![match part {
                QkvPart::Q => (0, q_rows),
                QkvPart::K => (q_rows, kv_rows),
                QkvPart::V => (q_rows + kv_rows, kv_rows),
            }],
            QkvLayout::Grouped {
                groups,
                q_per_group,
                head_dim,
            } => {
                let stride = (q_per_group + 2) * head_dim;
                let (offset, len) = match part {
                    QkvPart::Q => (0, q_per_group * head_dim),
                    QkvPart::K => (q_per_group * head_dim, head_dim),
                    QkvPart::V => ((q_per_group + 1) * head_dim, head_dim),
                };
                (0..groups).map(|g| (g * stride + offset, len)).collect()
            }
        }
    }

    /// A short text for the inventory: `blocks:q=256,kv=64` or `grouped:g=8,q=1,d=32`.
    pub fn describe(self) -> String {
        match self {
            QkvLayout::Blocks { q_rows, kv_rows } => format!("blocks:q={q_rows},kv={kv_rows}"),
            QkvLayout::Grouped {
                groups,
                q_per_group,
                head_dim,
            } => format!("grouped:g={groups},q={q_per_group},d={head_dim}"),
        }
    }
}

/// The layout of a fused q/k/v weight of `shape`, from the config's head counts; None when the
/// config does not say enough or the shape does not fit the layout it implies.
pub(super) fn layout(name: &str, shape: &[u64], hints: &ArchHints) -> Option<QkvLayout> {
    let [rows, cols] = *shape else { return None };
    if name.ends_with("c_attn.weight") || !name.ends_with("weight") || cols == 0 {
        return None;
    }
    let heads = u64::from(hints.heads.unwrap_or(0));
    let per_head = |heads: u64| {
        (heads > 0 && rows.is_multiple_of(3 * heads)).then(|| QkvLayout::Grouped {
            groups: heads,
            q_per_group: 1,
            head_dim: rows / (3 * heads),
        })
    };
    let layout = if hints.is(&["falcon", "RefinedWeb"]) {
        let head_dim = cols.checked_div(heads)?;
        if hints.new_decoder_architecture == Some(true) {
            let kv = u64::from(hints.kv_heads.unwrap_or(0));
            (kv > 0 && heads.is_multiple_of(kv)).then_some(QkvLayout::Grouped {
                groups: kv,
                q_per_group: heads / kv,
                head_dim,
            })?
        } else if hints.multi_query.unwrap_or(true) {
            QkvLayout::Blocks {
                q_rows: heads * head_dim,
                kv_rows: head_dim,
            }
        } else {
            per_head(heads)?
        }
    } else if hints.is(&["gpt_neox", "bloom"]) || name.starts_with("gpt_neox.") {
        per_head(heads)?
    } else if name.ends_with("in_proj_weight") && rows == 3 * cols {
        QkvLayout::Blocks {
            q_rows: cols,
            kv_rows: cols,
        }
    } else {
        // Phi-3 `qkv_proj`, MPT `Wqkv`, InternLM `wqkv`-style blocks
        let head_dim = hints
            .head_dim
            .map(u64::from)
            .or_else(|| cols.checked_div(heads))?;
        let kv = u64::from(hints.kv_heads.or(hints.heads)?);
        QkvLayout::Blocks {
            q_rows: heads * head_dim,
            kv_rows: kv * head_dim,
        }
    };
    (layout.rows() == rows && layout.rows() > 0).then_some(layout)
}
