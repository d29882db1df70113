//! Lining up tensors of two models by role (family, layer, expert), never by name.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::arch::Family;
use crate::model::{Model, TensorInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RoleKey {
    pub family: Family,
    pub layer: Option<u32>,
    pub expert: Option<u32>,
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
