//! Range coalescing: many small reads of one file become few requests.
//!
//! Pure planning, no I/O: the Hub source fetches the merged spans and cuts the original
//! ranges back out of them.

use super::ByteRange;

/// One request to make: the merged span and, for every original range it covers, the
/// index of that range in the caller's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The byte range to request.
    pub range: ByteRange,
    /// Indices, in the caller's list, of the ranges this span covers.
    pub members: Vec<usize>,
}

/// Merges ranges whose gap is at most `max_gap` bytes, without letting a span grow beyond
/// `max_span` bytes (a single range larger than that stays whole). Empty ranges are kept
/// as members of whatever span they fall in, or get their own empty span.
pub fn coalesce(ranges: &[ByteRange], max_gap: u64, max_span: u64) -> Vec<Span> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut spans: Vec<Span> = Vec::new();
    for i in order {
        let r = ranges[i];
        if let Some(last) = spans.last_mut() {
            let merged_end = last.range.end.max(r.end);
            let fits = merged_end - last.range.start <= max_span;
            if r.start <= last.range.end.saturating_add(max_gap) && fits {
                last.range.end = merged_end;
                last.members.push(i);
                continue;
            }
        }
        spans.push(Span {
            range: r,
            members: vec![i],
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn merges_within_gap_and_keeps_order_of_members() {
        let ranges = [r(100, 110), r(0, 10), r(15, 20), r(1000, 1010)];
        let spans = coalesce(&ranges, 5, 1 << 20);
        assert_eq!(
            spans,
            vec![
                Span {
                    range: r(0, 20),
                    members: vec![1, 2]
                },
                Span {
                    range: r(100, 110),
                    members: vec![0]
                },
                Span {
                    range: r(1000, 1010),
                    members: vec![3]
                },
            ]
        );
    }

    #[test]
    fn zero_gap_merges_only_touching_or_overlapping() {
        let spans = coalesce(&[r(0, 10), r(10, 20), r(5, 8), r(21, 30)], 0, 1 << 20);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].range, r(0, 20));
        assert_eq!(spans[0].members, vec![0, 2, 1]);
    }

    #[test]
    fn span_size_is_capped() {
        let ranges: Vec<ByteRange> = (0..10).map(|i| r(i * 10, i * 10 + 10)).collect();
        let spans = coalesce(&ranges, 0, 30);
        assert_eq!(spans.len(), 4);
        assert!(spans.iter().all(|s| s.range.len() <= 30));
        let big = coalesce(&[r(0, 100)], 0, 30);
        assert_eq!(big[0].range, r(0, 100), "a single large range stays whole");
    }
}
