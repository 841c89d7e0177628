//! The order in which erasure removes rows of several tables.
//!
//! Erasure never relies on `ON DELETE CASCADE`: it deletes the rows of a
//! table that references another before the rows of the table it references
//! (children before parents), following the foreign keys it read from
//! `pg_constraint`.

use std::collections::{BTreeMap, BTreeSet};

/// Order `tables` so that a table comes before every table it references
/// (children before parents): the order in which to delete. `edges` are
/// `(referencing, referenced)` pairs; self-references and edges to tables
/// outside `tables` are ignored.
///
/// Tables on a cycle of references (which no order can satisfy) are kept
/// together, in their given order, and the group is placed like one table:
/// after every table that references one of them from outside the cycle,
/// before every table one of them references outside it. Among tables (or
/// groups) free to go, the given order is kept. Each distinct table appears
/// once, in the place of its first occurrence. The result depends only on
/// the tables' order and the set of edges.
pub fn delete_order<T: Copy + Ord>(tables: &[T], edges: &[(T, T)]) -> Vec<T> {
    // Distinct tables, numbered in the order of their first occurrence.
    let mut position: BTreeMap<T, usize> = BTreeMap::new();
    let mut nodes: Vec<T> = Vec::with_capacity(tables.len());
    for &t in tables {
        position.entry(t).or_insert_with(|| {
            nodes.push(t);
            nodes.len() - 1
        });
    }
    let links: BTreeSet<(usize, usize)> = edges
        .iter()
        .filter_map(|(from, to)| Some((*position.get(from)?, *position.get(to)?)))
        .filter(|(from, to)| from != to)
        .collect();
    let mut references = vec![Vec::new(); nodes.len()];
    for &(from, to) in &links {
        references[from].push(to);
    }

    // Strongly connected components: a table alone, or the tables of a cycle.
    let component = components(&references);
    let count = component.iter().max().map_or(0, |m| m + 1);
    // Members of each component in given order (so the first is the earliest).
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (node, &c) in component.iter().enumerate() {
        members[c].push(node);
    }
    // Component -> the components it references; how many reference each.
    let mut referenced: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); count];
    let mut waiting = vec![0usize; count];
    for &(from, to) in &links {
        let (cf, ct) = (component[from], component[to]);
        if cf != ct && referenced[cf].insert(ct) {
            waiting[ct] += 1;
        }
    }

    // Components no remaining one references, earliest first.
    let mut ready: BTreeSet<(usize, usize)> = (0..count)
        .filter(|&c| waiting[c] == 0)
        .map(|c| (members[c][0], c))
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    while let Some((_, c)) = ready.pop_first() {
        out.extend(members[c].iter().map(|&node| nodes[node]));
        for &r in &referenced[c] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.insert((members[r][0], r));
            }
        }
    }
    out
}

/// Tarjan's algorithm, without recursion: the strongly connected component
/// of every node of the graph `successors` (component numbers start at 0).
fn components(successors: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    struct Walk {
        index: Vec<usize>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        /// The path being explored: (node, how many of its successors were visited).
        path: Vec<(usize, usize)>,
        next_index: usize,
    }
    impl Walk {
        fn visit(&mut self, v: usize) {
            self.index[v] = self.next_index;
            self.low[v] = self.next_index;
            self.next_index += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            self.path.push((v, 0));
        }
    }

    let n = successors.len();
    let mut walk = Walk {
        index: vec![UNSEEN; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        path: Vec::new(),
        next_index: 0,
    };
    let mut component = vec![UNSEEN; n];
    let mut next_component = 0;
    for root in 0..n {
        if walk.index[root] != UNSEEN {
            continue;
        }
        walk.visit(root);
        while let Some(&(v, i)) = walk.path.last() {
            if let Some(&w) = successors[v].get(i) {
                let top = walk.path.len() - 1;
                walk.path[top].1 += 1;
                if walk.index[w] == UNSEEN {
                    walk.visit(w);
                } else if walk.on_stack[w] {
                    walk.low[v] = walk.low[v].min(walk.index[w]);
                }
                continue;
            }
            walk.path.pop();
            if let Some(&(parent, _)) = walk.path.last() {
                walk.low[parent] = walk.low[parent].min(walk.low[v]);
            }
            if walk.low[v] == walk.index[v] {
                while let Some(w) = walk.stack.pop() {
                    walk.on_stack[w] = false;
                    component[w] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos<T: PartialEq + std::fmt::Debug>(order: &[T], t: T) -> usize {
        order
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("{t:?} missing from {order:?}"))
    }

    #[test]
    fn children_come_before_parents() {
        // 1 users <- 2 posts <- 3 comments; 4 alone; self edge on 3.
        let order = delete_order(&[1u32, 2, 3, 4], &[(2, 1), (3, 2), (3, 3), (3, 1)]);
        assert_eq!(order, [3, 2, 1, 4]);
    }

    #[test]
    fn free_tables_keep_their_given_order() {
        assert_eq!(delete_order(&[3u32, 1, 2], &[]), [3, 1, 2]);
        assert_eq!(delete_order::<u32>(&[], &[(1, 2)]), Vec::<u32>::new());
    }

    #[test]
    fn edges_outside_the_set_do_not_matter() {
        assert_eq!(
            delete_order(&[5u32, 6], &[(5, 99), (6, 5), (98, 6)]),
            [6, 5]
        );
    }

    #[test]
    fn a_cycle_keeps_every_table_together() {
        assert_eq!(delete_order(&[1u32, 2, 3], &[(1, 2), (2, 1)]), [1, 2, 3]);
        // The cycle {1, 2} references 3 and is referenced by 4.
        assert_eq!(
            delete_order(&[3u32, 1, 2, 4], &[(1, 2), (2, 1), (2, 3), (4, 1)]),
            [4, 1, 2, 3]
        );
    }

    /// A table referenced from a cycle comes after it, whatever the given
    /// order (the cycle's members used to be left in given order at the
    /// end, together with everything they reference).
    #[test]
    fn tables_below_a_cycle_come_after_it() {
        // x <-> y, y references a, a references b.
        let (b, a, x, y) = (1u32, 2, 3, 4);
        let order = delete_order(&[b, a, x, y], &[(x, y), (y, x), (y, a), (a, b)]);
        assert_eq!(order, [x, y, a, b]);
    }

    #[test]
    fn repeated_tables_appear_once() {
        assert_eq!(
            delete_order(&[1u32, 2, 1, 3, 2], &[(1, 2), (2, 1), (3, 1)]),
            [3, 1, 2]
        );
    }

    /// Whether `to` can be reached from `from` along `edges` (the oracle of
    /// the property below: `a` and `b` are on a cycle when each reaches the
    /// other).
    fn reaches(edges: &BTreeSet<(u8, u8)>, from: u8, to: u8) -> bool {
        let mut seen = BTreeSet::from([from]);
        let mut todo = vec![from];
        while let Some(t) = todo.pop() {
            for &(_, next) in edges.range((t, u8::MIN)..=(t, u8::MAX)) {
                if next == to {
                    return true;
                }
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        false
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random graphs with cycles, self-references, repeated tables and
        /// edges to tables outside the set.
        #[test]
        fn order_respects_every_edge_not_on_a_cycle(
            tables in prop::collection::vec(0u8..16, 0..16),
            edges in prop::collection::vec((0u8..20, 0u8..20), 0..48),
        ) {
            let order = delete_order(&tables, &edges);

            // Every table exactly once.
            let distinct: BTreeSet<u8> = tables.iter().copied().collect();
            prop_assert_eq!(order.len(), distinct.len());
            prop_assert_eq!(order.iter().copied().collect::<BTreeSet<u8>>(), distinct.clone());

            // a references b, b not on a cycle with a: a comes first.
            let inside: BTreeSet<(u8, u8)> = edges
                .iter()
                .copied()
                .filter(|(a, b)| a != b && distinct.contains(a) && distinct.contains(b))
                .collect();
            for &(a, b) in &inside {
                if !reaches(&inside, b, a) {
                    prop_assert!(pos(&order, a) < pos(&order, b), "{} -> {} in {:?}", a, b, order);
                }
            }

            // Deterministic, and only the set of edges matters.
            prop_assert_eq!(&delete_order(&tables, &edges), &order);
            let mut shuffled: Vec<(u8, u8)> = edges.iter().rev().copied().collect();
            shuffled.extend(edges.iter().copied());
            prop_assert_eq!(&delete_order(&tables, &shuffled), &order);
        }

        /// Without references, the given order is the result.
        #[test]
        fn no_edges_keep_the_given_order(tables in prop::collection::btree_set(any::<u32>(), 0..32)) {
            let tables: Vec<u32> = tables.into_iter().rev().collect();
            prop_assert_eq!(delete_order(&tables, &[]), tables);
        }
    }
}
