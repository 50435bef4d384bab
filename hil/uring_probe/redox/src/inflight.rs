//! Tracking many requests in flight by tag.
//!
//! The tracker remembers, for every tag in flight, when it was submitted and its place in submission
//! order. Requests complete (or are cancelled) by tag in any order. A completion is *out of order* when
//! some request submitted before it is still in flight at that moment (it overtook an older request):
//! answering a batch of n requests in reverse gives n-1 out-of-order completions.
//!
//! Tags can come from the tracker (`alloc_tag`, for a client numbering its own requests) or from outside
//! (`submit` with the tag the Redox kernel put in an Sqe; the kernel reuses a tag once its request is
//! answered, so a tag is only a duplicate while it is still in flight).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackError {
    /// Submitted while a request with the same tag is still in flight.
    Duplicate(u32),
    /// Completed or cancelled, but no request with this tag is in flight.
    Unknown(u32),
}

impl fmt::Display for TrackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackError::Duplicate(tag) => write!(f, "tag {tag} submitted while already in flight"),
            TrackError::Unknown(tag) => write!(f, "tag {tag} is not in flight"),
        }
    }
}

/// What a completion tells about its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion<T> {
    pub tag: u32,
    /// Position in submission order (0 = first request ever submitted).
    pub seq: u64,
    pub latency_ns: u64,
    /// An older request was still in flight when this one completed.
    pub out_of_order: bool,
    /// How many older requests it overtook.
    pub overtaken: usize,
    pub payload: T,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub submitted: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub max_in_flight: usize,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    seq: u64,
    submitted_ns: u64,
    payload: T,
}

#[derive(Clone, Debug)]
pub struct Tracker<T> {
    by_tag: BTreeMap<u32, Entry<T>>,
    /// Sequence numbers of the requests in flight (their submission order).
    order: BTreeSet<u64>,
    next_seq: u64,
    next_tag: u32,
    stats: Stats,
}

impl<T> Default for Tracker<T> {
    fn default() -> Self {
        Tracker::new()
    }
}

impl<T> Tracker<T> {
    pub fn new() -> Tracker<T> {
        Tracker { by_tag: BTreeMap::new(), order: BTreeSet::new(), next_seq: 0, next_tag: 0, stats: Stats::default() }
    }

    /// A tag not in flight now (counting up, wrapping, skipping tags in flight).
    pub fn alloc_tag(&mut self) -> u32 {
        assert!(self.by_tag.len() < u32::MAX as usize, "every tag is in flight");
        loop {
            let tag = self.next_tag;
            self.next_tag = self.next_tag.wrapping_add(1);
            if !self.by_tag.contains_key(&tag) {
                return tag;
            }
        }
    }

    /// Record that request `tag` was submitted at `now_ns`.
    pub fn submit(&mut self, tag: u32, now_ns: u64, payload: T) -> Result<u64, TrackError> {
        if self.by_tag.contains_key(&tag) {
            self.stats.duplicates += 1;
            return Err(TrackError::Duplicate(tag));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_tag.insert(tag, Entry { seq, submitted_ns: now_ns, payload });
        self.order.insert(seq);
        self.stats.submitted += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.by_tag.len());
        Ok(seq)
    }

    /// Allocate a tag and submit under it.
    pub fn submit_new(&mut self, now_ns: u64, payload: T) -> u32 {
        let tag = self.alloc_tag();
        self.submit(tag, now_ns, payload).expect("a freshly allocated tag is free");
        tag
    }

    /// Record that request `tag` completed at `now_ns`.
    pub fn complete(&mut self, tag: u32, now_ns: u64) -> Result<Completion<T>, TrackError> {
        let entry = match self.by_tag.remove(&tag) {
            Some(entry) => entry,
            None => {
                self.stats.unknown += 1;
                return Err(TrackError::Unknown(tag));
            }
        };
        let overtaken = self.order.range(..entry.seq).count();
        self.order.remove(&entry.seq);
        self.stats.completed += 1;
        if overtaken > 0 {
            self.stats.out_of_order += 1;
        }
        Ok(Completion {
            tag,
            seq: entry.seq,
            latency_ns: now_ns.saturating_sub(entry.submitted_ns),
            out_of_order: overtaken > 0,
            overtaken,
            payload: entry.payload,
        })
    }

    /// Drop request `tag` without completing it; returns its payload.
    pub fn cancel(&mut self, tag: u32) -> Result<T, TrackError> {
        match self.by_tag.remove(&tag) {
            Some(entry) => {
                self.order.remove(&entry.seq);
                self.stats.cancelled += 1;
                Ok(entry.payload)
            }
            None => {
                self.stats.unknown += 1;
                Err(TrackError::Unknown(tag))
            }
        }
    }

    pub fn contains(&self, tag: u32) -> bool {
        self.by_tag.contains_key(&tag)
    }
    pub fn get(&self, tag: u32) -> Option<&T> {
        self.by_tag.get(&tag).map(|e| &e.payload)
    }
    pub fn len(&self) -> usize {
        self.by_tag.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }
    /// Tags in flight, oldest submission first.
    pub fn in_flight(&self) -> Vec<u32> {
        let mut tags: Vec<(u64, u32)> = self.by_tag.iter().map(|(&t, e)| (e.seq, t)).collect();
        tags.sort_unstable();
        tags.into_iter().map(|(_, t)| t).collect()
    }
    /// The oldest request in flight and when it was submitted.
    pub fn oldest(&self) -> Option<(u32, u64)> {
        self.by_tag.iter().min_by_key(|(_, e)| e.seq).map(|(&t, e)| (t, e.submitted_ns))
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion() {
        let mut t = Tracker::new();
        let a = t.submit_new(100, "a");
        let b = t.submit_new(110, "b");
        assert_ne!(a, b);
        let ca = t.complete(a, 150).unwrap();
        assert_eq!((ca.seq, ca.latency_ns, ca.out_of_order, ca.payload), (0, 50, false, "a"));
        let cb = t.complete(b, 200).unwrap();
        assert!(!cb.out_of_order);
        assert_eq!(t.stats().out_of_order, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn reverse_batch_counts_n_minus_one() {
        let mut t = Tracker::new();
        let tags: Vec<u32> = (0..8).map(|i| t.submit_new(i, i)).collect();
        assert_eq!(t.stats().max_in_flight, 8);
        let mut overtaken = Vec::new();
        for &tag in tags.iter().rev() {
            overtaken.push(t.complete(tag, 100).unwrap().overtaken);
        }
        assert_eq!(overtaken, [7, 6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(t.stats().out_of_order, 7);
        assert_eq!(t.stats().completed, 8);
    }

    #[test]
    fn external_tags_duplicates_and_unknown() {
        let mut t = Tracker::new();
        assert_eq!(t.submit(5, 0, ()), Ok(0));
        assert_eq!(t.submit(5, 1, ()), Err(TrackError::Duplicate(5)));
        assert_eq!(t.complete(6, 2).unwrap_err(), TrackError::Unknown(6));
        assert!(t.complete(5, 3).is_ok());
        // The kernel reuses a tag once its request is answered: not a duplicate.
        assert_eq!(t.submit(5, 4, ()), Ok(1));
        assert_eq!(t.complete(5, 4).unwrap().seq, 1);
        assert_eq!(t.complete(5, 5).unwrap_err(), TrackError::Unknown(5));
        let s = t.stats();
        assert_eq!((s.duplicates, s.unknown, s.submitted, s.completed), (1, 2, 2, 2));
        assert_eq!(TrackError::Duplicate(5).to_string(), "tag 5 submitted while already in flight");
    }

    #[test]
    fn cancel_by_tag() {
        let mut t = Tracker::new();
        let a = t.submit_new(0, 'a');
        let b = t.submit_new(0, 'b');
        let c = t.submit_new(0, 'c');
        assert_eq!(t.cancel(a), Ok('a'));
        assert_eq!(t.cancel(a), Err(TrackError::Unknown(a)));
        // a is gone, so b completing first is in order; c then is in order too.
        assert!(!t.complete(b, 1).unwrap().out_of_order);
        assert!(!t.complete(c, 1).unwrap().out_of_order);
        let s = t.stats();
        assert_eq!((s.cancelled, s.completed, s.out_of_order, s.unknown), (1, 2, 0, 1));
    }

    #[test]
    fn any_order_with_oldest_and_listing() {
        let mut t = Tracker::new();
        for tag in [30u32, 10, 20] {
            t.submit(tag, tag as u64, ()).unwrap();
        }
        assert_eq!(t.in_flight(), [30, 10, 20]);
        assert_eq!(t.oldest(), Some((30, 30)));
        let c = t.complete(20, 100).unwrap();
        assert_eq!((c.out_of_order, c.overtaken, c.latency_ns), (true, 2, 80));
        let c = t.complete(30, 100).unwrap();
        assert!(!c.out_of_order);
        let c = t.complete(10, 100).unwrap();
        assert!(!c.out_of_order);
        assert_eq!(t.stats().out_of_order, 1);
        assert_eq!(t.oldest(), None);
    }

    #[test]
    fn alloc_skips_tags_in_flight_and_wraps() {
        let mut t: Tracker<()> = Tracker::new();
        t.submit(0, 0, ()).unwrap();
        t.submit(1, 0, ()).unwrap();
        assert_eq!(t.alloc_tag(), 2);
        t.next_tag = u32::MAX;
        assert_eq!(t.alloc_tag(), u32::MAX);
        assert_eq!(t.alloc_tag(), 2, "wraps to 0, skips 0 and 1 in flight");
        assert!(t.contains(1) && !t.contains(2));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn latency_never_negative() {
        let mut t = Tracker::new();
        let tag = t.submit_new(500, ());
        assert_eq!(t.complete(tag, 100).unwrap().latency_ns, 0);
    }
}
