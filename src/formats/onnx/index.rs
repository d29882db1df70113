//! The graph indexed by value name: which nodes consume and produce each value, and which
//! initializer carries it. Built once per file and read by `graph` (dequantisation) and
//! `names` (naming).

use std::collections::HashMap;

use super::proto::NodeProto;
use super::tensor::Stored;

/// Initializers and nodes by the values they consume and produce.
pub(super) struct Index<'a> {
    /// The graph's nodes, in file order.
    pub(super) nodes: &'a [NodeProto],
    inits: HashMap<&'a str, &'a Stored>,
    consumers: HashMap<&'a str, Vec<(usize, usize)>>,
    producers: HashMap<&'a str, usize>,
}

impl<'a> Index<'a> {
    /// The index of a graph's nodes and its initializers.
    pub(super) fn new(nodes: &'a [NodeProto], stored: &'a [Stored]) -> Index<'a> {
        let mut consumers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        let mut producers = HashMap::new();
        for (n, node) in nodes.iter().enumerate() {
            for (slot, input) in node.input.iter().enumerate() {
                if !input.is_empty() {
                    consumers.entry(input.as_str()).or_default().push((n, slot));
                }
            }
            for output in &node.output {
                producers.entry(output.as_str()).or_insert(n);
            }
        }
        let inits = stored.iter().map(|s| (s.name.as_str(), s)).collect();
        Index {
            nodes,
            inits,
            consumers,
            producers,
        }
    }

    /// The (node, input slot) pairs consuming a value.
    pub(super) fn consumers(&self, value: &str) -> &[(usize, usize)] {
        self.consumers.get(value).map_or(&[], Vec::as_slice)
    }

    /// Node `n`.
    pub(super) fn node(&self, n: usize) -> &'a NodeProto {
        &self.nodes[n]
    }

    /// The node producing a value.
    pub(super) fn producer(&self, value: &str) -> Option<&'a NodeProto> {
        self.producers.get(value).map(|&n| &self.nodes[n])
    }

    /// The initializer of a name.
    pub(super) fn init(&self, value: &str) -> Option<&'a Stored> {
        self.inits.get(value).copied()
    }
}
