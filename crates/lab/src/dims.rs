//! A model's geometry (residual width, layers, heads, head width) read from its `config.json`.
//! Its own file because the transforms, the obfuscations, the naming schemes and the reference
//! forward pass all need it, and none of them should depend on another for it.

use anyhow::{Result, anyhow, bail};

use crate::arch::name_parts;
use crate::model::Model;

/// Geometry read from `config.json` (falling back to tensor shapes).
#[derive(Clone, Debug, PartialEq)]
pub struct Dims {
    /// Residual width.
    pub hidden: usize,
    /// Regular layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head width.
    pub head_dim: usize,
}

impl Dims {
    /// Read dimensions of `m`.
    pub fn of(m: &Model) -> Result<Dims> {
        let hidden = match m.cfg_usize("hidden_size") {
            Some(h) => h,
            None => m
                .tensors
                .iter()
                .find(|(n, _)| n.contains("embed_tokens") || n.contains("word_embeddings"))
                .and_then(|(_, t)| t.shape.get(1).copied())
                .ok_or_else(|| {
                    anyhow!("config.json has no hidden_size and no embedding tensor was found")
                })?,
        };
        let layers = match m.cfg_usize("num_hidden_layers") {
            Some(l) => l,
            None => m
                .tensors
                .keys()
                .filter_map(|n| name_parts(n).layer)
                .max()
                .map(|x| x + 1)
                .unwrap_or(0),
        };
        let heads = m.cfg_usize("num_attention_heads").unwrap_or(0);
        let kv_heads = m.cfg_usize("num_key_value_heads").unwrap_or(heads);
        let head_dim = m
            .cfg_usize("head_dim")
            .unwrap_or(hidden.checked_div(heads).unwrap_or(0));
        Ok(Dims {
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// Errors unless the head counts are known and the query heads group over the KV heads.
    pub(crate) fn need_heads(&self) -> Result<()> {
        if self.heads == 0
            || self.kv_heads == 0
            || self.head_dim == 0
            || !self.heads.is_multiple_of(self.kv_heads)
        {
            bail!(
                "config.json: need num_attention_heads, num_key_value_heads (dividing it) and head_dim (got {}, {}, {})",
                self.heads,
                self.kv_heads,
                self.head_dim
            );
        }
        Ok(())
    }
}
