//! What few users have — the days of their behaviour rules and the devices beyond the
//! profile's — packed into one block of cells behind one pointer of [`UserState`].
//!
//! Entries lie back to back: a header cell (kind in bits 48.., index in bits 32..48 — a
//! rule's index into [`Rules::past`](crate::detect::Rules) —, length in bits 0..32), then
//! that many cells. A rule's cells are its packed days ([`crate::detect::past::Buckets`]); a
//! device's are its key, its last-seen time and its app fields, one [`Prop`] a cell. Rules
//! come first, in the order they were first recorded in, then the devices in the order of the
//! list they were last set from: a user restored from its snapshot has the same block.
//!
//! The block is a [`ThinVec`]: one 8-byte pointer in the user (no allocation while empty) to
//! one allocation holding the length, the capacity and the cells, so a scheduled run reaches
//! a user's days in one step from the user. A user's first rule with three active days costs
//! 48 bytes: the 16-byte length and capacity, the rule's header and its three days.
//!
//! [`UserState`]: super::UserState

use std::ops::Range;

use thin_vec::ThinVec;

use super::{Device, Prop};
use crate::event::EventTime;

const PAST: u64 = 0;
const DEVICE: u64 = 1;

fn header(kind: u64, index: u16, len: usize) -> u64 {
    let len = u32::try_from(len).expect("an entry of fewer than 2^32 cells");
    (kind << 48) | (u64::from(index) << 32) | u64::from(len)
}

/// The packed entries (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Extra(ThinVec<u64>);

impl Extra {
    /// No rule and no device.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry: kind, index and the range of its cells.
    fn entries(&self) -> impl Iterator<Item = (u64, u16, Range<usize>)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let h = *self.0.get(at)?;
            let len = (h as u32) as usize;
            let cells = at + 1..at + 1 + len;
            at = cells.end;
            Some((h >> 48, (h >> 32) as u16, cells))
        })
    }

    fn find_past(&self, r: u16) -> Option<Range<usize>> {
        self.entries()
            .find(|&(kind, i, _)| kind == PAST && i == r)
            .map(|(_, _, cells)| cells)
    }

    /// Rule `r`'s days, if the user has any.
    pub(super) fn past(&self, r: u16) -> Option<&[u64]> {
        self.find_past(r).map(|c| &self.0[c])
    }

    /// Rule `r`'s days, to update in place.
    pub(super) fn past_mut(&mut self, r: u16) -> Option<&mut [u64]> {
        self.find_past(r).map(|c| &mut self.0[c])
    }

    /// Every rule's days, in the order they were first recorded.
    pub(super) fn pasts(&self) -> impl Iterator<Item = (u16, &[u64])> + '_ {
        self.entries()
            .filter(|e| e.0 == PAST)
            .map(|(_, r, cells)| (r, &self.0[cells]))
    }

    /// Sets rule `r`'s days (a new entry after the other rules' if it had none).
    pub(super) fn set_past(&mut self, r: u16, days: &[u64]) {
        let found = self.find_past(r);
        if let Some(c) = found.clone().filter(|c| c.len() == days.len()) {
            // As many days as before (a rolling window): in place.
            self.0[c].copy_from_slice(days);
            return;
        }
        let replaced = found.map_or(0, |c| 1 + c.len());
        let mut cells = ThinVec::with_capacity(self.0.len() - replaced + 1 + days.len());
        let mut found = false;
        for (kind, i, range) in self.entries() {
            if kind == DEVICE && !found {
                cells.push(header(PAST, r, days.len()));
                cells.extend_from_slice(days);
                found = true;
            }
            let entry = if kind == PAST && i == r {
                found = true;
                days
            } else {
                &self.0[range]
            };
            cells.push(header(kind, i, entry.len()));
            cells.extend_from_slice(entry);
        }
        if !found {
            cells.push(header(PAST, r, days.len()));
            cells.extend_from_slice(days);
        }
        self.replace(cells);
    }

    /// The devices, in their order.
    pub(super) fn devices(&self) -> Vec<Device> {
        self.entries()
            .filter(|e| e.0 == DEVICE)
            .map(|(_, _, cells)| {
                let c = &self.0[cells];
                Device {
                    key: c[0],
                    seen: c[1] as EventTime,
                    fields: c[2..].iter().map(|&f| Prop::from_bits(f)).collect(),
                }
            })
            .collect()
    }

    /// Replaces the devices with `devices`.
    pub(super) fn set_devices(&mut self, devices: &[Device]) {
        let kept = (self.entries().filter(|e| e.0 != DEVICE)).map(|(_, _, c)| 1 + c.len());
        let added = devices.iter().map(|d| 3 + d.fields.len());
        let mut cells = ThinVec::with_capacity(kept.sum::<usize>() + added.sum::<usize>());
        for (kind, i, range) in self.entries().filter(|e| e.0 != DEVICE) {
            cells.push(header(kind, i, range.len()));
            cells.extend_from_slice(&self.0[range]);
        }
        for d in devices {
            cells.push(header(DEVICE, 0, 2 + d.fields.len()));
            cells.extend([d.key, d.seen as u64]);
            cells.extend(d.fields.iter().map(|f| f.to_bits()));
        }
        self.replace(cells);
    }

    /// Takes `cells`, built in a block of exactly their size (entries change rarely).
    fn replace(&mut self, cells: ThinVec<u64>) {
        debug_assert_eq!(
            cells.len(),
            cells.capacity(),
            "a block of exactly its cells"
        );
        self.0 = cells;
    }
}

impl Prop {
    /// The property as one cell: `val` in bits 0..32, `id` in 32..48, the tag above.
    fn to_bits(self) -> u64 {
        u64::from(self.val) | (u64::from(self.id) << 32) | ((self.tag as u64) << 48)
    }

    fn from_bits(bits: u64) -> Prop {
        use super::Tag;
        let tag = match bits >> 48 {
            0 => Tag::Bool,
            1 => Tag::Num,
            2 => Tag::BigNum,
            3 => Tag::Str,
            _ => Tag::Other,
        };
        Prop {
            val: bits as u32,
            id: (bits >> 32) as u16,
            tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Tag;
    use super::*;

    fn device(key: u64, seen: EventTime, vals: &[u32]) -> Device {
        Device {
            key,
            seen,
            fields: vals
                .iter()
                .map(|&v| Prop {
                    val: v,
                    id: v as u16 + 1,
                    tag: [Tag::Bool, Tag::Num, Tag::BigNum, Tag::Str, Tag::Other][v as usize % 5],
                })
                .collect(),
        }
    }

    #[test]
    fn rules_and_devices_keep_their_cells_and_order_whatever_is_set_between() {
        let mut e = Extra::default();
        assert!(e.0.is_empty() && e.past(0).is_none() && e.devices().is_empty());
        e.set_past(3, &[1, 2, 3]);
        e.set_devices(&[device(9, -5, &[0, 1]), device(7, 4, &[])]);
        e.set_past(1, &[4]);
        e.set_past(3, &[5, 6]);
        let kinds: Vec<_> = e.entries().map(|(kind, i, _)| (kind, i)).collect();
        assert_eq!(kinds, [(PAST, 3), (PAST, 1), (DEVICE, 0), (DEVICE, 0)]);
        assert_eq!(e.past(3), Some(&[5, 6][..]));
        assert_eq!(e.past(1), Some(&[4][..]));
        assert_eq!(e.past(2), None);
        let pasts: Vec<_> = e.pasts().collect();
        assert_eq!(pasts, vec![(3, &[5, 6][..]), (1, &[4][..])]);
        // As many days as before: in place, in the same block.
        let block = e.0.as_ptr();
        e.set_past(3, &[7, 8]);
        assert_eq!((e.0.as_ptr(), e.past(3)), (block, Some(&[7, 8][..])));
        e.set_past(3, &[5, 6]);
        assert_eq!(e.devices(), vec![device(9, -5, &[0, 1]), device(7, 4, &[])]);
        e.past_mut(1).unwrap()[0] = 8;
        e.set_devices(&[device(2, EventTime::MIN, &[2, 3, 4])]);
        assert_eq!(e.past(1), Some(&[8][..]));
        assert_eq!(e.past(3), Some(&[5, 6][..]));
        assert_eq!(e.devices(), vec![device(2, EventTime::MIN, &[2, 3, 4])]);
        e.set_devices(&[]);
        assert!(e.devices().is_empty());
        assert_eq!(e.pasts().count(), 2);
    }

    #[test]
    fn a_first_rule_with_three_days_takes_48_bytes() {
        let mut e = Extra::default();
        e.set_past(0, &[1, 2, 3]);
        // thin-vec's header: the length and the capacity, two `usize`s, before the cells.
        assert_eq!(e.0.capacity(), e.0.len());
        assert_eq!(
            2 * std::mem::size_of::<usize>() + std::mem::size_of_val(&*e.0),
            48
        );
        assert_eq!(std::mem::size_of::<Extra>(), 8);
    }
}
