//! A compact, sorted index of the vendor's objects.
//!
//! The desired side is streamed from Postgres; the vendor side must be held to be looked up by
//! booking key. A `HashMap<String, Vec<VendorObject>>` costs ~250 bytes per object (1M objects
//! → ~250 MB); here all strings live in one arena and each object is a 32-byte entry, so 1M
//! objects with ~30-byte references and 36-byte ids take ~100 MB.

use accesshub_inventory::VendorObject;

#[derive(Debug, Clone, Copy)]
struct Entry {
    key_off: u32,
    key_len: u32,
    ref_off: u32,
    ref_len: u16,
    id_len: u16,
    // The vendor id follows the reference in the arena.
    fingerprint: u64,
}

/// Vendor objects by booking key; entries are marked when a desired booking claims them, and
/// the unmarked rest are the strays.
#[derive(Debug, Default)]
pub struct VendorIndex {
    arena: String,
    entries: Vec<Entry>,
    seen: Vec<bool>,
    sorted: bool,
}

/// One indexed object, borrowed from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedObject<'a> {
    /// Position in the index (for [`VendorIndex::mark`]).
    pub pos: usize,
    /// Booking key.
    pub booking_key: &'a str,
    /// Our reference.
    pub reference: &'a str,
    /// Vendor id.
    pub vendor_id: &'a str,
    /// Fingerprint.
    pub fingerprint: u64,
}

impl VendorIndex {
    /// An index sized for about `objects` objects.
    pub fn with_capacity(objects: usize) -> Self {
        VendorIndex {
            arena: String::with_capacity(objects.saturating_mul(72)),
            entries: Vec::with_capacity(objects),
            seen: Vec::new(),
            sorted: false,
        }
    }

    /// Adds an object (before [`VendorIndex::finish`]). Over-long strings are refused: an
    /// index entry stores lengths in 16 bits.
    pub fn push(&mut self, o: &VendorObject) -> Result<(), String> {
        let (Ok(ref_len), Ok(id_len)) = (
            u16::try_from(o.reference.len()),
            u16::try_from(o.vendor_id.len()),
        ) else {
            return Err(format!("reference or id too long: {}", o.reference));
        };
        // The booking key is usually inside the reference: store it once.
        let ref_off = self.offset()?;
        self.arena.push_str(&o.reference);
        self.arena.push_str(&o.vendor_id);
        let (key_off, key_len) = match o.reference.find(&o.booking_key) {
            Some(i) if !o.booking_key.is_empty() => (ref_off + i as u32, o.booking_key.len()),
            _ => {
                let off = self.offset()?;
                self.arena.push_str(&o.booking_key);
                (off, o.booking_key.len())
            }
        };
        self.entries.push(Entry {
            key_off,
            key_len: u32::try_from(key_len).map_err(|_| "booking key too long".to_owned())?,
            ref_off,
            ref_len,
            id_len,
            fingerprint: o.fingerprint,
        });
        Ok(())
    }

    fn offset(&self) -> Result<u32, String> {
        u32::try_from(self.arena.len()).map_err(|_| "vendor index over 4 GiB".to_owned())
    }

    /// Sorts by booking key; call once after the last push.
    pub fn finish(&mut self) {
        let arena = &self.arena;
        let key = |e: &Entry| &arena[e.key_off as usize..(e.key_off + e.key_len) as usize];
        self.entries
            .sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.ref_off.cmp(&b.ref_off)));
        self.seen = vec![false; self.entries.len()];
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.sorted = true;
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate heap bytes, for logs and the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.seen.capacity()
    }

    fn get(&self, pos: usize) -> IndexedObject<'_> {
        let e = &self.entries[pos];
        let r = e.ref_off as usize;
        let i = r + e.ref_len as usize;
        IndexedObject {
            pos,
            booking_key: &self.arena[e.key_off as usize..(e.key_off + e.key_len) as usize],
            reference: &self.arena[r..i],
            vendor_id: &self.arena[i..i + e.id_len as usize],
            fingerprint: e.fingerprint,
        }
    }

    /// The objects of one booking.
    pub fn for_key(&self, booking_key: &str) -> impl Iterator<Item = IndexedObject<'_>> {
        debug_assert!(self.sorted);
        let start = self
            .entries
            .partition_point(|e| self.key_of(e) < booking_key);
        (start..self.entries.len())
            .take_while(move |&p| self.key_of(&self.entries[p]) == booking_key)
            .map(|p| self.get(p))
    }

    fn key_of(&self, e: &Entry) -> &str {
        &self.arena[e.key_off as usize..(e.key_off + e.key_len) as usize]
    }

    /// Marks an object as belonging to a desired booking (so it is not a stray).
    pub fn mark(&mut self, pos: usize) {
        if let Some(s) = self.seen.get_mut(pos) {
            *s = true;
        }
    }

    /// Objects no desired booking claimed, grouped by booking key (sorted).
    pub fn unmarked(&self) -> impl Iterator<Item = IndexedObject<'_>> {
        (0..self.entries.len())
            .filter(|&p| !self.seen[p])
            .map(|p| self.get(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, r: &str, id: &str, fp: u64) -> VendorObject {
        VendorObject {
            reference: r.into(),
            booking_key: key.into(),
            vendor_id: id.into(),
            fingerprint: fp,
        }
    }

    #[test]
    fn lookup_by_key_and_strays() {
        let mut ix = VendorIndex::with_capacity(4);
        ix.push(&obj("R2", "t:R2:AB12", "id-1", 1)).unwrap();
        ix.push(&obj("R1", "t:R1:XY99", "id-2", 2)).unwrap();
        ix.push(&obj("R1", "t:R1:CD34", "id-3", 3)).unwrap();
        ix.push(&obj("Z", "grant-77", "grant-77", 4)).unwrap();
        ix.finish();
        let r1: Vec<_> = ix
            .for_key("R1")
            .map(|o| (o.reference, o.vendor_id))
            .collect();
        assert_eq!(r1, vec![("t:R1:XY99", "id-2"), ("t:R1:CD34", "id-3")]);
        assert_eq!(ix.for_key("R").count(), 0);
        let z: Vec<_> = ix.for_key("Z").collect();
        assert_eq!(z[0].reference, "grant-77");
        assert_eq!(z[0].booking_key, "Z");
        for p in ix.for_key("R1").map(|o| o.pos).collect::<Vec<_>>() {
            ix.mark(p);
        }
        let strays: Vec<_> = ix.unmarked().map(|o| o.booking_key).collect();
        assert_eq!(strays, vec!["R2", "Z"]);
    }
}
