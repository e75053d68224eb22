//! Group-id mapping: key columns of a batch → dense `u32` group ids, new keys appended in order
//! of first appearance.
//!
//! Four implementations behind one trait, chosen once per query by key types:
//! - one primitive key (integers, dates, timestamps, decimals): values in a `Vec`, an
//!   open-addressing table of `(value, group)` slots;
//! - one string or binary key: all key bytes in one buffer with offsets and stored hashes, no
//!   per-key allocation;
//! - one float, boolean or dictionary key: the `arrow-row` format, one comparable byte string
//!   per key. Floats are normalised first so `-0.0 = 0.0` and every NaN is one group;
//! - two or more keys: each column mapped to ids by one of the above, the tuple of ids packed
//!   into one `u64` (or, past 64 bits, folded pairwise) and mapped by primitive tables
//!   ([`CompositeGroupValues`]).
//!
//! NULL is a key value of its own: all NULL keys form one group.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BinaryBuilder, GenericByteArray,
    GenericByteViewArray, PrimitiveArray, StringBuilder,
};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::compute::cast;
use arrow::datatypes::ArrowNativeType;
use arrow::datatypes::{
    ByteArrayType, ByteViewType, DataType, Date32Type, Date64Type, Decimal128Type, Float32Type,
    Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;
use quiver_core::{QuiverError, Result};

use crate::hash::{hash_bytes, hash_key_words, hash_short_words};
use crate::huge_pages;
use crate::EmitTo;

/// Maps key tuples to dense group ids.
pub trait GroupValues: Send {
    /// Appends one group id per row of `keys` to `groups` (cleared first).
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<u32>) -> Result<()>;
    /// Number of groups.
    fn len(&self) -> usize;
    /// True when there are no groups.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held.
    fn size(&self) -> usize;
    /// The key columns of the emitted groups; remaining groups are renumbered from 0.
    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>>;
}

/// The group-id mapping for keys of `key_types`.
pub fn new_group_values(key_types: &[DataType]) -> Result<Box<dyn GroupValues>> {
    macro_rules! primitive {
        ($t:ty, $dt:expr) => {
            Ok(Box::new(PrimitiveGroupValues::<$t>::new($dt.clone())))
        };
    }
    if let [data_type] = key_types {
        return match data_type {
            DataType::Int8 => primitive!(Int8Type, data_type),
            DataType::Int16 => primitive!(Int16Type, data_type),
            DataType::Int32 => primitive!(Int32Type, data_type),
            DataType::Int64 => primitive!(Int64Type, data_type),
            DataType::UInt8 => primitive!(UInt8Type, data_type),
            DataType::UInt16 => primitive!(UInt16Type, data_type),
            DataType::UInt32 => primitive!(UInt32Type, data_type),
            DataType::UInt64 => primitive!(UInt64Type, data_type),
            DataType::Date32 => primitive!(Date32Type, data_type),
            DataType::Date64 => primitive!(Date64Type, data_type),
            DataType::Decimal128(..) => primitive!(Decimal128Type, data_type),
            DataType::Timestamp(TimeUnit::Second, _) => primitive!(TimestampSecondType, data_type),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                primitive!(TimestampMillisecondType, data_type)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                primitive!(TimestampMicrosecondType, data_type)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                primitive!(TimestampNanosecondType, data_type)
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Ok(Box::new(BytesGroupValues::new(data_type.clone(), true)))
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                Ok(Box::new(BytesGroupValues::new(data_type.clone(), false)))
            }
            _ => Ok(Box::new(RowGroupValues::new(key_types)?)),
        };
    }
    if key_types.is_empty() {
        return Ok(Box::new(RowGroupValues::new(key_types)?));
    }
    Ok(Box::new(CompositeGroupValues::new(key_types)?))
}

/// A primitive key's bits, for hashing; equal keys have equal bits.
pub trait KeyBits: Copy + Eq + Default + Send + 'static {
    /// The key folded to 64 bits.
    fn bits(self) -> u64;
}

macro_rules! key_bits {
    ($($t:ty),*) => {$(
        impl KeyBits for $t {
            #[inline(always)]
            fn bits(self) -> u64 {
                self as u64
            }
        }
    )*};
}
key_bits!(i8, i16, i32, i64, u8, u16, u32, u64);

impl KeyBits for i128 {
    #[inline(always)]
    fn bits(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).rotate_left(29)
    }
}

/// Fibonacci hashing of a key's bits; the table index is the top bits.
#[inline(always)]
fn fibonacci_hash(bits: u64) -> u64 {
    if cfg!(feature = "force-hash-collisions") {
        return 0;
    }
    (bits ^ (bits >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A slot of the open-addressing table: the key inline, so a probe touches one cache line.
#[derive(Clone, Copy)]
struct Slot<K> {
    key: K,
    group: u32,
}

const EMPTY_SLOT: u32 = u32::MAX;

/// How many rows ahead the probe loop prefetches its slot.
const PREFETCH_DISTANCE: usize = 16;

/// Group ids for one primitive key column: a linear-probing table of `(key, group)` slots,
/// sized before each batch so a batch never rehashes mid-probe, with slots prefetched a few rows
/// ahead (large tables are cache-miss bound).
pub struct PrimitiveGroupValues<T: ArrowPrimitiveType> {
    data_type: DataType,
    slots: Vec<Slot<T::Native>>,
    /// `64 - log2(slots.len())`: the index of a hash is `hash >> shift`.
    shift: u32,
    values: Vec<T::Native>,
    null_group: Option<u32>,
    indices: Vec<usize>,
}

impl<T: ArrowPrimitiveType> PrimitiveGroupValues<T>
where
    T::Native: KeyBits,
{
    /// An empty mapping for keys of `data_type`.
    pub fn new(data_type: DataType) -> Self {
        let mut values = PrimitiveGroupValues {
            data_type,
            slots: Vec::new(),
            shift: 64,
            values: Vec::new(),
            null_group: None,
            indices: Vec::new(),
        };
        values.rebuild(64);
        values
    }

    /// Makes room for `rows` more keys at load factor 1/2, rebuilding the table if needed.
    fn reserve(&mut self, rows: usize) {
        let needed = (self.values.len() + rows).saturating_mul(2);
        if needed > self.slots.len() {
            self.grow(needed.next_power_of_two());
        }
    }

    /// Moves every slot into a table of `capacity` slots. The old table is walked in slot
    /// order: a key's home is its hash's top bits, so homes keep their order as the table
    /// grows and the new table is written nearly front to back (re-inserting in group order
    /// wrote a table past the caches at random, a miss per group).
    fn grow(&mut self, capacity: usize) {
        let old = std::mem::take(&mut self.slots);
        self.clear_slots(capacity);
        for slot in old.into_iter().filter(|slot| slot.group != EMPTY_SLOT) {
            place_slot(&mut self.slots, self.shift, slot);
        }
    }

    /// Re-inserts every group, in group order, into `capacity` slots (after an emit has
    /// renumbered the groups).
    fn rebuild(&mut self, capacity: usize) {
        self.clear_slots(capacity);
        for (group, &key) in self.values.iter().enumerate() {
            if self.null_group != Some(group as u32) {
                let group = group as u32;
                place_slot(&mut self.slots, self.shift, Slot { key, group });
            }
        }
    }

    /// Makes the table `capacity` (at least 64, a power of two) empty slots.
    fn clear_slots(&mut self, capacity: usize) {
        let capacity = capacity.max(64).next_power_of_two();
        self.shift = 64 - capacity.trailing_zeros();
        let empty = Slot {
            key: T::Native::default(),
            group: EMPTY_SLOT,
        };
        huge_pages::refill(&mut self.slots, capacity, empty);
    }

    #[inline(always)]
    fn probe(&mut self, key: T::Native, mut index: usize, mask: usize) -> u32 {
        loop {
            let slot = self.slots[index];
            if slot.group == EMPTY_SLOT {
                let group = self.values.len() as u32;
                self.values.push(key);
                self.slots[index] = Slot { key, group };
                return group;
            }
            if slot.key == key {
                return slot.group;
            }
            index = (index + 1) & mask;
        }
    }
}

/// Puts `slot` at the first empty slot from its key's home in `slots` (indexed by the hash's
/// top `64 - shift` bits).
#[inline(always)]
fn place_slot<K: KeyBits>(slots: &mut [Slot<K>], shift: u32, slot: Slot<K>) {
    let mask = slots.len() - 1;
    let mut index = (fibonacci_hash(slot.key.bits()) >> shift) as usize;
    while slots[index].group != EMPTY_SLOT {
        index = (index + 1) & mask;
    }
    slots[index] = slot;
}

/// Asks the CPU to bring `slot`'s cache line in (a no-op off x86_64).
#[inline(always)]
pub(crate) fn prefetch<T>(slot: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that never faults; the pointer comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (slot as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

impl<T> GroupValues for PrimitiveGroupValues<T>
where
    T: ArrowPrimitiveType,
    T::Native: KeyBits,
{
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<u32>) -> Result<()> {
        let array = single_key(keys)?
            .as_primitive_opt::<T>()
            .ok_or_else(|| QuiverError::Internal(format!("group key is not {}", self.data_type)))?;
        self.intern_values(array.values(), array.nulls(), groups);
        Ok(())
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<T::Native>>()
            + self.values.capacity() * std::mem::size_of::<T::Native>()
            + self.indices.capacity() * std::mem::size_of::<usize>()
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = emit_to.count(self.values.len());
        let emitted: Vec<T::Native> = self.values.drain(..n).collect();
        let nulls = self.null_group.and_then(|g| {
            ((g as usize) < n).then(|| NullBuffer::from_iter((0..n).map(|i| i != g as usize)))
        });
        self.null_group = match self.null_group {
            Some(g) if (g as usize) < n => None,
            Some(g) => Some(g - n as u32),
            None => None,
        };
        if n > 0 {
            let capacity = self.slots.len();
            self.rebuild(capacity);
        }
        let array =
            PrimitiveArray::<T>::new(emitted.into(), nulls).with_data_type(self.data_type.clone());
        Ok(vec![Arc::new(array)])
    }
}

impl<T> PrimitiveGroupValues<T>
where
    T: ArrowPrimitiveType,
    T::Native: KeyBits,
{
    /// [`GroupValues::intern`] of a key column given as its values and NULLs.
    fn intern_values(
        &mut self,
        values: &[T::Native],
        nulls: Option<&NullBuffer>,
        groups: &mut Vec<u32>,
    ) {
        groups.clear();
        groups.reserve(values.len());
        self.reserve(values.len() + 1);
        let mask = self.slots.len() - 1;
        let shift = self.shift;
        // Hash the whole column first: the loop vectorises and the probe loop can prefetch.
        let mut indices = std::mem::take(&mut self.indices);
        indices.clear();
        indices.extend(
            values
                .iter()
                .map(|v| (fibonacci_hash(v.bits()) >> shift) as usize),
        );
        let nulls = nulls.filter(|n| n.null_count() > 0);
        for (row, (&key, &index)) in values.iter().zip(&indices).enumerate() {
            if let Some(&ahead) = indices.get(row + PREFETCH_DISTANCE) {
                prefetch(&self.slots[ahead]);
            }
            if nulls.is_some_and(|n| n.is_null(row)) {
                let group = match self.null_group {
                    Some(group) => group,
                    None => {
                        let group = self.values.len() as u32;
                        self.values.push(T::Native::default());
                        self.null_group = Some(group);
                        group
                    }
                };
                groups.push(group);
                continue;
            }
            let group = self.probe(key, index, mask);
            groups.push(group);
        }
        self.indices = indices;
    }
}

/// Group ids for one string or binary key column; key bytes live in one buffer.
///
/// The table is open addressing with linear probing, each slot holding the key's length, its
/// first and last 8 bytes (`slot_words`) and, past 16 bytes, bytes 8 to 16 beside the group
/// id: a key of up to 24 bytes — most group keys — is found and compared without leaving the
/// slot; a longer one compares its full bytes only when those 24 bytes and the length match.
pub struct BytesGroupValues {
    data_type: DataType,
    is_utf8: bool,
    /// Power-of-two sized, at most a quarter full.
    slots: Vec<BytesSlot>,
    /// Key bytes of group `g` are `bytes[offsets[g]..offsets[g + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    group_hashes: Vec<u64>,
    null_group: Option<u32>,
}

/// 32 bytes, aligned to 32 so a probe reads one cache line (at the allocator's 16-byte
/// alignment every other slot straddled two).
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct BytesSlot {
    head: u64,
    /// [`middle_word`].
    middle: u64,
    tail: u64,
    len: u32,
    group: u32,
}

const EMPTY_BYTES_SLOT: BytesSlot = BytesSlot {
    head: 0,
    middle: 0,
    tail: 0,
    // No key of up to 24 bytes matches an empty slot's words, so
    // [`BytesGroupValues::find_known_lean`] tests for an empty slot only after a mismatch.
    len: u32::MAX,
    group: EMPTY_SLOT,
};

/// Bytes 8 to 16 of a key longer than 16 bytes, else 0: with [`slot_words`] and the length
/// it determines a key of up to 24 bytes.
#[inline(always)]
fn middle_word(key: &[u8]) -> u64 {
    match key.get(8..16) {
        Some(bytes) if key.len() > 16 => {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(bytes);
            u64::from_le_bytes(buf)
        }
        _ => 0,
    }
}

/// A key's first 8 bytes (zero-padded when shorter) and, from 8 bytes on, its last 8 (else 0):
/// with the length they determine a key of up to 16 bytes. The slots hold these.
#[inline(always)]
fn slot_words(key: &[u8]) -> (u64, u64) {
    let word = |at: usize| -> u64 {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&key[at..at + 8]);
        u64::from_le_bytes(buf)
    };
    let len = key.len();
    if len >= 8 {
        (word(0), word(len - 8))
    } else {
        (short_word(key), 0)
    }
}

/// A key of under 8 bytes as a zero-padded little-endian word, from overlapping loads (the
/// overlapping bytes are the same on both sides of the `|`) rather than a `memcpy` call, which
/// made a loop that inlines this spill its registers around the call.
#[inline(always)]
fn short_word(key: &[u8]) -> u64 {
    let len = key.len();
    if len >= 4 {
        let half = |at: usize| -> u64 {
            let mut buf = [0u8; 4];
            buf.copy_from_slice(&key[at..at + 4]);
            u64::from(u32::from_le_bytes(buf))
        };
        half(0) | half(len - 4) << (8 * (len - 4))
    } else if len > 0 {
        let byte = |at: usize| u64::from(key[at]) << (8 * at);
        byte(0) | byte(len / 2) | byte(len - 1)
    } else {
        0
    }
}

/// [`slot_words`] of the key `data[start..start + len]` without a branch on its length, when
/// `data` holds 8 bytes from `start` (loads may run past the key but not past `data`): keys of
/// mixed lengths made the length branches mispredict on most rows.
#[inline(always)]
fn slot_words_in(data: &[u8], start: usize, len: usize) -> (u64, u64) {
    let word_at = |at: usize| -> Option<u64> {
        let bytes: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    match (word_at(start), word_at(start + len.max(8) - 8)) {
        (Some(first), Some(last)) => {
            let long = len >= 8;
            let head_mask = ((1u128 << (8 * len.min(8))) - 1) as u64;
            (first & head_mask, if long { last } else { 0 })
        }
        _ => slot_words(&data[start..start + len]),
    }
}

/// `MIDDLE_MASKS[len.min(24)]` keeps bytes 8 to 16 of a key of `len` bytes when it is longer
/// than 16 bytes. A table rather than a comparison: LLVM turns a select between a loaded word
/// and 0 back into a branch on the length, the one [`key_words_in`] exists to avoid.
static MIDDLE_MASKS: [u64; 25] = {
    let mut masks = [0; 25];
    let mut len = 17;
    while len <= 24 {
        masks[len] = u64::MAX;
        len += 1;
    }
    masks
};

/// The head, middle and tail words of the key `data[start..start + len]` ([`slot_words`] and
/// [`middle_word`]) without a branch on its length, when `data` holds 16 bytes from `start`.
#[inline(always)]
fn key_words_in(data: &[u8], start: usize, len: usize) -> Option<(u64, u64, u64)> {
    let window = data.get(start..start.checked_add(len.max(16))?)?;
    let front = window.first_chunk::<16>()?;
    let last = window.get(..len.max(8))?.last_chunk::<8>()?;
    let first = u64::from_le_bytes(*front.first_chunk::<8>()?);
    let second = u64::from_le_bytes(*front.last_chunk::<8>()?);
    let head = first & ((1u128 << (8 * len.min(8))) - 1) as u64;
    let middle = second & MIDDLE_MASKS[len.min(24)];
    let tail = u64::from_le_bytes(*last) & 0u64.wrapping_sub(u64::from(len >= 8));
    Some((head, middle, tail))
}

/// Whether two keys longer than 16 bytes whose length and first and last 8 bytes are known to
/// match are equal: two more word compares up to 32 bytes instead of a `memcmp` call.
#[inline(always)]
fn middles_equal(stored: &[u8], key: &[u8]) -> bool {
    let len = key.len();
    if stored.len() != len {
        return false;
    }
    if len <= 32 {
        let word = |bytes: &[u8], at: usize| -> u64 {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(buf)
        };
        // Bytes 8..16 and len-16..len-8 with the first and last 8 cover every byte.
        word(stored, 8) == word(key, 8) && word(stored, len - 16) == word(key, len - 16)
    } else {
        stored == key
    }
}

impl BytesGroupValues {
    /// An empty mapping for keys of `data_type` (`is_utf8` for string types).
    pub fn new(data_type: DataType, is_utf8: bool) -> Self {
        BytesGroupValues {
            data_type,
            is_utf8,
            slots: vec![EMPTY_BYTES_SLOT; 64],
            bytes: Vec::new(),
            offsets: vec![0],
            group_hashes: Vec::new(),
            null_group: None,
        }
    }

    /// The group of `key`, appending a new group if it is unseen.
    #[inline(always)]
    pub fn intern_key(&mut self, key: &[u8]) -> u32 {
        let words = slot_words(key);
        match self.probe(&self.slots, key, words) {
            Probe::Found(group) => group,
            Probe::Vacant {
                index,
                hash,
                middle,
            } => self.insert(key, (words.0, middle, words.1), hash, index),
        }
    }

    /// Looks `key`, whose [`slot_words`] are `words`, up in the table `slots` (this mapping's,
    /// passed in so a caller's loop keeps it in registers).
    #[inline(always)]
    fn probe(&self, slots: &[BytesSlot], key: &[u8], (head, tail): (u64, u64)) -> Probe {
        let len = key.len();
        let (hash, middle) = if len <= 16 {
            (hash_short_words(head, tail, len), 0)
        } else {
            let middle = middle_word(key);
            let hash = if len <= 24 {
                hash_key_words(head, middle, tail, len)
            } else {
                hash_bytes(key)
            };
            (hash, middle)
        };
        self.probe_hashed(slots, key, (head, middle, tail), hash, false)
    }

    /// [`Self::probe`] of a key whose hash and three words are known. `branch_free` compares
    /// all words at once, with no branch on the length (for keys of mixed lengths); else the
    /// middle word is compared only for keys longer than 16 bytes.
    #[inline(always)]
    fn probe_hashed(
        &self,
        slots: &[BytesSlot],
        key: &[u8],
        (head, middle, tail): (u64, u64, u64),
        hash: u64,
        branch_free: bool,
    ) -> Probe {
        // Lengths beyond u32 only lose the length as a quick filter: long keys compare in full.
        let len = key.len() as u32;
        let mask = slots.len() - 1;
        let mut index = hash as usize & mask;
        loop {
            let slot = slots[index];
            if slot.group == EMPTY_SLOT {
                return Probe::Vacant {
                    index,
                    hash,
                    middle,
                };
            }
            let same_words = if branch_free {
                // A slot's middle word is 0 for keys of up to 16 bytes, like the key's.
                ((slot.head ^ head)
                    | (slot.middle ^ middle)
                    | (slot.tail ^ tail)
                    | u64::from(slot.len ^ len))
                    == 0
            } else {
                slot.head == head
                    && slot.tail == tail
                    && slot.len == len
                    && (key.len() <= 16 || slot.middle == middle)
            };
            if same_words && (key.len() <= 24 || middles_equal(self.key(slot.group), key)) {
                return Probe::Found(slot.group);
            }
            index = (index + 1) & mask;
        }
    }

    #[cold]
    fn insert(
        &mut self,
        key: &[u8],
        (head, middle, tail): (u64, u64, u64),
        hash: u64,
        index: usize,
    ) -> u32 {
        let group = self.group_hashes.len() as u32;
        self.bytes.extend_from_slice(key);
        self.offsets.push(self.bytes.len());
        self.group_hashes.push(hash);
        self.slots[index] = BytesSlot {
            head,
            middle,
            tail,
            len: key.len() as u32,
            group,
        };
        // At most a quarter full: short probe chains keep the probe loop's branch predictable.
        if self.table_groups() * 4 > self.slots.len() {
            self.rebuild(self.slots.len() * 2);
        }
        group
    }

    /// Groups in the table (every group but the NULL one).
    fn table_groups(&self) -> usize {
        self.group_hashes.len() - usize::from(self.null_group.is_some())
    }

    /// Re-inserts every group into `capacity` slots.
    fn rebuild(&mut self, capacity: usize) {
        huge_pages::refill(&mut self.slots, capacity, EMPTY_BYTES_SLOT);
        let mask = capacity - 1;
        for (g, &hash) in self.group_hashes.iter().enumerate() {
            if self.null_group == Some(g as u32) {
                continue;
            }
            let key = &self.bytes[self.offsets[g]..self.offsets[g + 1]];
            let (head, tail) = slot_words(key);
            let mut index = hash as usize & mask;
            while self.slots[index].group != EMPTY_SLOT {
                index = (index + 1) & mask;
            }
            self.slots[index] = BytesSlot {
                head,
                middle: middle_word(key),
                tail,
                len: key.len() as u32,
                group: g as u32,
            };
        }
    }

    /// The key bytes of group `group`.
    pub fn key(&self, group: u32) -> &[u8] {
        let g = group as usize;
        &self.bytes[self.offsets[g]..self.offsets[g + 1]]
    }

    fn intern_null(&mut self) -> u32 {
        if let Some(g) = self.null_group {
            return g;
        }
        let g = self.group_hashes.len() as u32;
        self.offsets.push(self.bytes.len());
        self.group_hashes.push(0);
        self.null_group = Some(g);
        g
    }

    fn intern_byte_array<B: ByteArrayType>(
        &mut self,
        array: &GenericByteArray<B>,
        groups: &mut Vec<u32>,
    ) {
        let offsets = array.value_offsets();
        let data = array.value_data();
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        // Keys whose lengths fall often on both sides of 8 bytes make a branch on the length
        // mispredict on many rows, so they take branch-free words (2 loads and a mask); keys
        // mostly on one side (judged from the first rows) branch, which then predicts well and
        // lets the loads start sooner. Both give the same words.
        let sampled = array.len().min(LENGTH_SAMPLE_ROWS);
        let short_keys = (0..sampled)
            .filter(|&row| (offsets[row + 1] - offsets[row]).as_usize() < 8)
            .count();
        let branch_free = !(short_keys * 4 < sampled || short_keys * 4 > sampled * 3);
        // Batches whose sampled keys are all of at most 16 bytes run a loop that leaves for any
        // longer key, so it holds no call (long-key hashing and compares) and keeps its values
        // in registers; if longer keys turn out common after all, the batch goes on with the
        // loop that takes every key.
        let long_sampled = (0..sampled)
            .filter(|&row| (offsets[row + 1] - offsets[row]).as_usize() > 16)
            .count();
        let mut short_only = long_sampled == 0;
        // Keys often on both sides of 16 bytes as well take a loop that reads three words and
        // hashes them without a branch on the length.
        let mixed = long_sampled * 4 >= sampled && long_sampled * 4 <= sampled * 3;
        // Batches without NULLs whose keys are mostly of up to 24 bytes, of lengths that make
        // the branching loops mispredict, take the leanest loop (keys of one length class
        // predict well in the branching loops, whose short-key hash is one product cheaper). A
        // batch whose keys over 24 bytes, each a trip out of that loop, turn out common after
        // all goes on with the others.
        let over_24_sampled = (0..sampled)
            .filter(|&row| (offsets[row + 1] - offsets[row]).as_usize() > 24)
            .count();
        let mut lean = nulls.is_none()
            && over_24_sampled * LEAN_EXITS_PER_BATCH <= sampled
            && (branch_free || !short_only);
        let mut long_keys = 0usize;
        let read_free = |start: usize, len: usize| slot_words_in(data, start, len);
        let read_branching = |start: usize, len: usize| slot_words(&data[start..start + len]);
        groups.clear();
        groups.resize(array.len(), 0);
        let mut from = 0;
        loop {
            // Known keys run through a loop that only reads the table; a new key leaves it for
            // an insert at the slot the loop found (which may grow the table) and comes back.
            let stop = match (branch_free, short_only) {
                _ if lean => self.find_known_lean(offsets, data, from, groups),
                _ if mixed => self.find_known_mixed(offsets, data, nulls, from, groups),
                (true, true) => {
                    self.find_known::<_, true>(offsets, data, nulls, from, groups, read_free)
                }
                (true, false) => {
                    self.find_known::<_, false>(offsets, data, nulls, from, groups, read_free)
                }
                (false, true) => {
                    self.find_known::<_, true>(offsets, data, nulls, from, groups, read_branching)
                }
                (false, false) => {
                    self.find_known::<_, false>(offsets, data, nulls, from, groups, read_branching)
                }
            };
            from = match stop {
                Stop::Done => break,
                Stop::LongKey { row } => {
                    long_keys += 1;
                    short_only &= long_keys * LONG_KEYS_PER_SHORT_ONLY_BATCH <= groups.len();
                    lean &= long_keys * LEAN_EXITS_PER_BATCH <= groups.len();
                    groups[row] = self
                        .intern_key(&data[offsets[row].as_usize()..offsets[row + 1].as_usize()]);
                    row + 1
                }
                Stop::Lookup { row } => {
                    let key = &data[offsets[row].as_usize()..offsets[row + 1].as_usize()];
                    if key.len() > 24 {
                        long_keys += 1;
                        lean &= long_keys * LEAN_EXITS_PER_BATCH <= groups.len();
                    }
                    groups[row] = self.intern_key(key);
                    row + 1
                }
                Stop::FirstNull { row } => {
                    groups[row] = self.intern_null();
                    row + 1
                }
                Stop::NewKey {
                    row,
                    words,
                    hash,
                    index,
                } => {
                    let key = &data[offsets[row].as_usize()..offsets[row + 1].as_usize()];
                    groups[row] = self.insert(key, words, hash, index);
                    row + 1
                }
            };
        }
    }

    /// Writes the groups of rows `from..groups.len()` into `groups` while their keys (whose
    /// [`slot_words`] `words_at(start, len)` gives) are in the table, and says where it
    /// stopped; with `SHORT_ONLY` also at the first key longer than 16 bytes. Reads only: the
    /// table and its size stay in registers, where the read-and-insert loop reloaded them on
    /// every row.
    #[inline(always)]
    fn find_known<O: ArrowNativeType, const SHORT_ONLY: bool>(
        &self,
        offsets: &[O],
        data: &[u8],
        nulls: Option<&NullBuffer>,
        from: usize,
        groups: &mut [u32],
        words_at: impl Fn(usize, usize) -> (u64, u64),
    ) -> Stop {
        let rows = groups.len();
        let slots = self.slots.as_slice();
        let bounds = offsets[from..=rows].windows(2);
        for (row, (bounds, group)) in (from..).zip(bounds.zip(&mut groups[from..])) {
            if nulls.is_some_and(|n| n.is_null(row)) {
                match self.null_group {
                    Some(null_group) => *group = null_group,
                    None => return Stop::FirstNull { row },
                }
                continue;
            }
            let (start, end) = (bounds[0].as_usize(), bounds[1].as_usize());
            let key = &data[start..end];
            if SHORT_ONLY && key.len() > 16 {
                return Stop::LongKey { row };
            }
            let (head, tail) = words_at(start, key.len());
            match self.probe(slots, key, (head, tail)) {
                Probe::Found(found) => *group = found,
                Probe::Vacant {
                    index,
                    hash,
                    middle,
                } => {
                    return Stop::NewKey {
                        row,
                        words: (head, middle, tail),
                        hash,
                        index,
                    }
                }
            }
        }
        Stop::Done
    }

    /// [`Self::find_known`] for keys often on both sides of 16 bytes (and of 8): the length
    /// branches of the other loops would mispredict on many rows, so this one reads and hashes
    /// the words of keys of up to 24 bytes with none. Not inlined, so that its registers are its
    /// own.
    #[inline(never)]
    fn find_known_mixed<O: ArrowNativeType>(
        &self,
        offsets: &[O],
        data: &[u8],
        nulls: Option<&NullBuffer>,
        from: usize,
        groups: &mut [u32],
    ) -> Stop {
        let rows = groups.len();
        let slots = self.slots.as_slice();
        let bounds = offsets[from..=rows].windows(2);
        for (row, (bounds, group)) in (from..).zip(bounds.zip(&mut groups[from..])) {
            if nulls.is_some_and(|n| n.is_null(row)) {
                match self.null_group {
                    Some(null_group) => *group = null_group,
                    None => return Stop::FirstNull { row },
                }
                continue;
            }
            let (start, end) = (bounds[0].as_usize(), bounds[1].as_usize());
            let key = &data[start..end];
            let (head, middle, tail) = key_words_in(data, start, key.len()).unwrap_or_else(|| {
                let (head, tail) = slot_words(key);
                (head, middle_word(key), tail)
            });
            let hash = if key.len() <= 24 {
                hash_key_words(head, middle, tail, key.len())
            } else {
                hash_bytes(key)
            };
            match self.probe_hashed(slots, key, (head, middle, tail), hash, true) {
                Probe::Found(found) => *group = found,
                Probe::Vacant {
                    index,
                    hash,
                    middle,
                } => {
                    return Stop::NewKey {
                        row,
                        words: (head, middle, tail),
                        hash,
                        index,
                    }
                }
            }
        }
        Stop::Done
    }

    /// [`Self::find_known`] for batches without NULLs whose keys are mostly of up to 24 bytes
    /// and of lengths that would make a branch on the length mispredict: the three words of
    /// such a key come from one 32-byte window around it (one bounds check), masked by length
    /// from one table, and are hashed with one formula, so the loop holds no call, no branch
    /// on the length and few enough values to keep them all in registers. It stops at a new
    /// key and at any other ([`Stop::Lookup`]: also a key that starts in the first 8 bytes of
    /// `data` or fewer than 24 bytes before its end) for the caller to intern.
    #[inline(never)]
    fn find_known_lean<O: ArrowNativeType>(
        &self,
        offsets: &[O],
        data: &[u8],
        from: usize,
        groups: &mut [u32],
    ) -> Stop {
        let slots = self.slots.as_slice();
        // One index for offsets and groups (the zipped iterators kept two, and the loop spilled).
        let offsets = &offsets[..=groups.len()];
        for row in from..groups.len() {
            let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
            let len = end.wrapping_sub(start);
            let Some((head, middle, tail)) = window_words(data, start, len) else {
                return Stop::Lookup { row };
            };
            match find_words(slots, (head, middle, tail), len) {
                Some(found) => groups[row] = found,
                None => return Stop::Lookup { row },
            }
        }
        Stop::Done
    }

    /// [`Self::intern_byte_array`] for `Utf8View` and `BinaryView` keys.
    fn intern_byte_views<T: ByteViewType + ?Sized>(
        &mut self,
        array: &GenericByteViewArray<T>,
        groups: &mut Vec<u32>,
    ) {
        let key_at = |row: usize| -> &[u8] { array.value(row).as_ref() };
        let views = array.views().as_ref();
        let buffers = array.data_buffers();
        groups.clear();
        // Batches without NULLs whose keys are rarely over 24 bytes take the lean loop (as
        // string arrays do); the others, and a batch that leaves that loop too often, look
        // their keys up one by one.
        let sampled = array.len().min(LENGTH_SAMPLE_ROWS);
        let over_24_sampled = views[..sampled]
            .iter()
            .filter(|&&view| view as u32 > 24)
            .count();
        // Keys often on both sides of 12 bytes (inline in the view or not) make a branch on
        // the length mispredict, so they read both word sets and select one.
        let inline_sampled = views[..sampled]
            .iter()
            .filter(|&&view| view as u32 <= 12)
            .count();
        let branch_free = inline_sampled * 4 >= sampled && inline_sampled * 4 <= sampled * 3;
        let mut from = 0;
        if array.null_count() == 0 && over_24_sampled * LEAN_EXITS_PER_BATCH <= sampled {
            groups.resize(array.len(), 0);
            let mut exits = 0usize;
            while exits * LEAN_EXITS_PER_BATCH <= groups.len() {
                let stop = if branch_free {
                    self.find_known_views_lean::<true>(views, buffers, from, groups)
                } else {
                    self.find_known_views_lean::<false>(views, buffers, from, groups)
                };
                let Some(row) = stop else {
                    return;
                };
                let key = key_at(row);
                exits += usize::from(key.len() > 24);
                groups[row] = self.intern_key(key);
                from = row + 1;
            }
            groups.truncate(from);
        }
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        for row in from..array.len() {
            if nulls.is_some_and(|n| n.is_null(row)) {
                groups.push(self.intern_null());
                continue;
            }
            groups.push(self.intern_key(key_at(row)));
        }
    }

    /// [`Self::find_known_lean`] over the views of a `Utf8View` or `BinaryView` array without
    /// NULLs: a key of up to 12 bytes is read from its view, a longer one of up to 24 from a
    /// 32-byte window around it in its data buffer; the words and hash are those of the same
    /// key in any other array. `BRANCH_FREE` reads both the inline words and a window (a
    /// zero one for inline keys) and selects, instead of branching on the length. Returns the
    /// row it stopped at, if any, for the caller to intern.
    #[inline(never)]
    fn find_known_views_lean<const BRANCH_FREE: bool>(
        &self,
        views: &[u128],
        buffers: &[Buffer],
        from: usize,
        groups: &mut [u32],
    ) -> Option<usize> {
        let slots = self.slots.as_slice();
        for (row, (&view, group)) in (from..).zip(views[from..].iter().zip(&mut groups[from..])) {
            let len = view as u32 as usize;
            let inline_words = || {
                // The key is the 12 bytes after the length (zero-padded or not: masked).
                let inline = view >> 32;
                let [head_mask, _, tail_mask] = KEY_WORD_MASKS[len.min(12)];
                let tail = (inline >> (8 * len.clamp(8, 12) - 64)) as u64;
                (inline as u64 & head_mask, 0, tail & tail_mask)
            };
            let (buffer, offset) = ((view >> 64) as u32 as usize, (view >> 96) as u32 as usize);
            let (head, middle, tail) = if BRANCH_FREE {
                // An inline view holds key bytes where others hold the buffer and offset; it
                // reads (and drops) the words of a zero window instead.
                let inline = len <= 12;
                let buffer = buffers
                    .get(if inline { 0 } else { buffer })
                    .map_or(&ZERO_WINDOW[..0], |buffer| buffer.as_slice());
                let (bytes, start) = if inline {
                    (&ZERO_WINDOW[..], 8)
                } else {
                    (buffer, offset)
                };
                let Some(window) = window_words(bytes, start, len) else {
                    return Some(row);
                };
                let from_view = inline_words();
                if inline {
                    from_view
                } else {
                    window
                }
            } else if len <= 12 {
                inline_words()
            } else {
                let words = buffers
                    .get(buffer)
                    .and_then(|buffer| window_words(buffer.as_slice(), offset, len));
                let Some(words) = words else {
                    return Some(row);
                };
                words
            };
            match find_words(slots, (head, middle, tail), len) {
                Some(found) => *group = found,
                None => return Some(row),
            }
        }
        None
    }
}

/// The window an inline view's key reads in [`BytesGroupValues::find_known_views_lean`] instead
/// of its (nonexistent) place in a data buffer.
static ZERO_WINDOW: [u8; 32] = [0; 32];

/// The masked [`slot_words`] and [`middle_word`] of the key `bytes[start..start + len]` when
/// it has at most 24 bytes and the 32 bytes from 8 before it lie in `bytes` (they hold its
/// first 16 and its last 8: one bounds check for the three words, no branch on the length).
#[inline(always)]
fn window_words(bytes: &[u8], start: usize, len: usize) -> Option<(u64, u64, u64)> {
    let window = bytes
        .get(start.wrapping_sub(8)..start.wrapping_add(24))?
        .first_chunk::<32>()
        .filter(|_| len <= 24)?;
    let word = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&window[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let [head_mask, middle_mask, tail_mask] = KEY_WORD_MASKS[len];
    Some((
        word(8) & head_mask,
        word(16) & middle_mask,
        word(len) & tail_mask,
    ))
}

/// The group in `slots` of a key of at most 24 bytes whose three words and length are given
/// (hashed here), if it is there. Compares all four slot fields at once; empty slots have length
/// `u32::MAX`, which no such key has, so emptiness is tested only after a mismatch. Says only
/// whether the key is there: a lean loop that holds no more than that keeps its values in
/// registers, and the caller's insert finds the slot again.
#[inline(always)]
fn find_words(
    slots: &[BytesSlot],
    (head, middle, tail): (u64, u64, u64),
    len: usize,
) -> Option<u32> {
    let mask = slots.len() - 1;
    let mut index = hash_key_words(head, middle, tail, len) as usize & mask;
    loop {
        let slot = &slots[index];
        if ((slot.head ^ head)
            | (slot.middle ^ middle)
            | (slot.tail ^ tail)
            | u64::from(slot.len ^ len as u32))
            == 0
        {
            return Some(slot.group);
        }
        if slot.group == EMPTY_SLOT {
            return None;
        }
        index = (index + 1) & mask;
    }
}

/// `KEY_WORD_MASKS[len]` keeps, of the words at bytes 0, 8 and len - 8 of a key of `len <= 24`
/// bytes, what [`slot_words`] and [`middle_word`] keep: the key's bytes of the first, the
/// second only past 16 bytes, the last only from 8 bytes on.
static KEY_WORD_MASKS: [[u64; 3]; 25] = {
    let mut masks = [[0; 3]; 25];
    let mut len = 0;
    while len <= 24 {
        masks[len][0] = if len >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * len)) - 1
        };
        masks[len][1] = if len > 16 { u64::MAX } else { 0 };
        masks[len][2] = if len >= 8 { u64::MAX } else { 0 };
        len += 1;
    }
    masks
};

/// Where a key is in a [`BytesGroupValues`] table.
enum Probe {
    /// In group `.0`.
    Found(u32),
    /// Not there; it would go at slot `index`, with its hash and [`middle_word`].
    Vacant {
        index: usize,
        hash: u64,
        middle: u64,
    },
}

/// Where [`BytesGroupValues::find_known`] stopped.
enum Stop {
    /// Every row has its group.
    Done,
    /// Row `row` is the first NULL and there is no NULL group yet.
    FirstNull { row: usize },
    /// Row `row`'s key is longer than 16 bytes (in a loop for short keys only).
    LongKey { row: usize },
    /// Row `row`'s key is new, or one a lean loop does not read (over 24 bytes, or too near
    /// an end of its buffer): the caller interns it.
    Lookup { row: usize },
    /// Row `row`'s key is new: it goes at slot `index` with its hash and its head, middle and
    /// tail words.
    NewKey {
        row: usize,
        words: (u64, u64, u64),
        hash: u64,
        index: usize,
    },
}

/// A batch that finds more than one long key in this many rows leaves the short-keys loop.
const LONG_KEYS_PER_SHORT_ONLY_BATCH: usize = 64;

/// A batch that leaves [`BytesGroupValues::find_known_lean`] for more than one key in this many
/// rows goes on with the other loops.
const LEAN_EXITS_PER_BATCH: usize = 8;

/// Rows of a batch whose key lengths choose how [`BytesGroupValues`] reads the key words.
const LENGTH_SAMPLE_ROWS: usize = 64;

impl GroupValues for BytesGroupValues {
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<u32>) -> Result<()> {
        let array = single_key(keys)?;
        groups.clear();
        groups.reserve(array.len());
        match array.data_type() {
            DataType::Utf8 => self.intern_byte_array(array.as_string::<i32>(), groups),
            DataType::LargeUtf8 => self.intern_byte_array(array.as_string::<i64>(), groups),
            DataType::Binary => self.intern_byte_array(array.as_binary::<i32>(), groups),
            DataType::LargeBinary => self.intern_byte_array(array.as_binary::<i64>(), groups),
            DataType::Utf8View => self.intern_byte_views(array.as_string_view(), groups),
            DataType::BinaryView => self.intern_byte_views(array.as_binary_view(), groups),
            other => {
                return Err(QuiverError::Internal(format!(
                    "bytes group key of type {other}, expected {}",
                    self.data_type
                )))
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.group_hashes.len()
    }

    fn size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<BytesSlot>()
            + self.bytes.capacity()
            + self.offsets.capacity() * 8
            + self.group_hashes.capacity() * 8
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = emit_to.count(self.len());
        let is_null = |g: usize| self.null_group == Some(g as u32);
        let array: ArrayRef = if self.is_utf8 {
            let mut builder = StringBuilder::with_capacity(n, self.offsets[n]);
            for g in 0..n {
                if is_null(g) {
                    builder.append_null();
                } else {
                    let text = std::str::from_utf8(self.key(g as u32)).map_err(|e| {
                        QuiverError::Internal(format!("string group key is not UTF-8: {e}"))
                    })?;
                    builder.append_value(text);
                }
            }
            Arc::new(builder.finish())
        } else {
            let mut builder = BinaryBuilder::with_capacity(n, self.offsets[n]);
            for g in 0..n {
                if is_null(g) {
                    builder.append_null();
                } else {
                    builder.append_value(self.key(g as u32));
                }
            }
            Arc::new(builder.finish())
        };
        let array = if array.data_type() == &self.data_type {
            array
        } else {
            cast(&array, &self.data_type)?
        };
        // Keep the groups after `n`, renumbered from 0.
        let cut = self.offsets[n];
        self.bytes.drain(..cut);
        self.offsets.drain(..n);
        for offset in &mut self.offsets {
            *offset -= cut;
        }
        self.group_hashes.drain(..n);
        self.null_group = self
            .null_group
            .and_then(|g| (g as usize >= n).then(|| g - n as u32));
        let capacity = (self.table_groups() * 4).next_power_of_two().max(64);
        self.rebuild(capacity);
        Ok(vec![array])
    }
}

/// Group ids for two or more key columns, built from the single-column mappings.
///
/// Each key column is mapped to dense ids of its own distinct values (a [`BytesGroupValues`],
/// [`PrimitiveGroupValues`] or, for floats, booleans and dictionaries, a one-column
/// [`RowGroupValues`]). While the columns' id counts fit side by side in 64 bits, a row's ids
/// are packed into one `u64` and mapped to a group by one primitive table: one probe per row
/// however many columns. Past 64 bits the ids are folded left to right instead, `(group of the
/// columns so far) << 32 | (id in the next column)`, one table per fold. No key tuple is
/// encoded per row (in the `arrow-row` form a 9-byte string alone takes 19 bytes) and no row
/// compares variable-length bytes; a key column of few distinct values costs one probe of a
/// small table.
pub struct CompositeGroupValues {
    key_types: Vec<DataType>,
    /// One mapping per key column: value → id in that column.
    columns: Vec<Box<dyn GroupValues>>,
    /// Id tuple → group.
    tuples: TupleGroups,
    /// The most bits a packed id tuple may take (64; smaller in tests of the folded form).
    packed_bits_limit: u32,
    /// `group_column_ids[c][g]`: the id in column `c` of group `g`'s key value.
    group_column_ids: Vec<Vec<u32>>,
    /// Per-batch ids of each column's values.
    row_column_ids: Vec<Vec<u32>>,
    /// Per-batch packed id tuples, or groups of the columns folded so far.
    row_tuples: Vec<u64>,
    row_partial_groups: Vec<u32>,
}

/// How a tuple of per-column ids becomes a group.
enum TupleGroups {
    /// Column `c`'s id in `widths[c]` bits, the first column highest, one table over the
    /// packed `u64`. Widths only grow (the table is rebuilt from the groups' ids when they do).
    Packed {
        widths: Vec<u32>,
        table: PrimitiveGroupValues<UInt64Type>,
    },
    /// `combiners[i]`: (group of columns `0..=i`, id in column `i + 1`) → group of columns
    /// `0..=i + 1`; the last one's groups are the groups.
    Folded {
        combiners: Vec<PrimitiveGroupValues<UInt64Type>>,
    },
}

impl TupleGroups {
    fn empty_packed(columns: usize) -> Self {
        TupleGroups::Packed {
            widths: vec![0; columns],
            table: PrimitiveGroupValues::new(DataType::UInt64),
        }
    }

    fn size(&self) -> usize {
        match self {
            TupleGroups::Packed { widths, table } => widths.capacity() * 4 + table.size(),
            TupleGroups::Folded { combiners } => combiners.iter().map(|c| c.size()).sum(),
        }
    }

    /// Maps the id tuples of `column_ids` (one list per column, equal lengths) to groups.
    fn intern(
        &mut self,
        column_ids: &[Vec<u32>],
        tuples: &mut Vec<u64>,
        partial_groups: &mut Vec<u32>,
        groups: &mut Vec<u32>,
    ) {
        match self {
            TupleGroups::Packed { widths, table } => {
                tuples.clear();
                tuples.extend(column_ids[0].iter().map(|&id| u64::from(id)));
                for (ids, &width) in column_ids.iter().zip(widths.iter()).skip(1) {
                    for (tuple, &id) in tuples.iter_mut().zip(ids) {
                        *tuple = (*tuple << width) | u64::from(id);
                    }
                }
                table.intern_values(tuples, None, groups);
            }
            TupleGroups::Folded { combiners } => {
                let last = combiners.len() - 1;
                for (i, combiner) in combiners.iter_mut().enumerate() {
                    let so_far = if i == 0 {
                        &column_ids[0]
                    } else {
                        &*partial_groups
                    };
                    tuples.clear();
                    tuples.extend(
                        so_far
                            .iter()
                            .zip(&column_ids[i + 1])
                            .map(|(&group, &id)| (u64::from(group) << 32) | u64::from(id)),
                    );
                    if i == last {
                        combiner.intern_values(tuples, None, groups);
                    } else {
                        combiner.intern_values(tuples, None, partial_groups);
                    }
                }
            }
        }
    }
}

/// Bits that hold every id below `count`.
fn id_bits(count: usize) -> u32 {
    usize::BITS - count.saturating_sub(1).leading_zeros()
}

impl CompositeGroupValues {
    /// An empty mapping for key tuples of `key_types` (at least two).
    pub fn new(key_types: &[DataType]) -> Result<Self> {
        Self::with_packed_bits_limit(key_types, u64::BITS)
    }

    fn with_packed_bits_limit(key_types: &[DataType], packed_bits_limit: u32) -> Result<Self> {
        if key_types.len() < 2 {
            return Err(QuiverError::Internal(format!(
                "a composite group key needs two or more columns, got {}",
                key_types.len()
            )));
        }
        let columns = key_types
            .iter()
            .map(|t| new_group_values(std::slice::from_ref(t)))
            .collect::<Result<Vec<_>>>()?;
        Ok(CompositeGroupValues {
            key_types: key_types.to_vec(),
            columns,
            tuples: TupleGroups::empty_packed(key_types.len()),
            packed_bits_limit,
            group_column_ids: vec![Vec::new(); key_types.len()],
            row_column_ids: vec![Vec::new(); key_types.len()],
            row_tuples: Vec::new(),
            row_partial_groups: Vec::new(),
        })
    }

    /// Makes the packed widths hold every column's ids (or moves to the folded form when they
    /// cannot), re-mapping the existing groups' id tuples so each keeps its number.
    fn fit_tuples(&mut self) -> Result<()> {
        let TupleGroups::Packed { widths, .. } = &self.tuples else {
            return Ok(());
        };
        let needed: Vec<u32> = self.columns.iter().map(|c| id_bits(c.len())).collect();
        if needed.iter().zip(widths).all(|(need, width)| need <= width) {
            return Ok(());
        }
        let total: u32 = needed.iter().sum();
        let columns = needed.len() as u32;
        self.tuples = if total > self.packed_bits_limit {
            TupleGroups::Folded {
                combiners: (1..columns)
                    .map(|_| PrimitiveGroupValues::new(DataType::UInt64))
                    .collect(),
            }
        } else {
            // Spare bits per column, where they fit, so a growing column rebuilds less often.
            let spare = (0..=2)
                .rev()
                .find(|spare| total + spare * columns <= self.packed_bits_limit)
                .unwrap_or(0);
            TupleGroups::Packed {
                widths: needed.iter().map(|need| (need + spare).min(32)).collect(),
                table: PrimitiveGroupValues::new(DataType::UInt64),
            }
        };
        let groups = self.len();
        if groups > 0 {
            let mut renumbered = Vec::new();
            self.tuples.intern(
                &self.group_column_ids,
                &mut self.row_tuples,
                &mut self.row_partial_groups,
                &mut renumbered,
            );
            if !renumbered.iter().copied().eq(0..groups as u32) {
                return Err(QuiverError::Internal(
                    "re-mapping composite group keys changed their numbers".into(),
                ));
            }
        }
        Ok(())
    }
}

impl GroupValues for CompositeGroupValues {
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<u32>) -> Result<()> {
        if keys.len() != self.columns.len() {
            return Err(QuiverError::Internal(format!(
                "{} key columns for {} key types",
                keys.len(),
                self.columns.len()
            )));
        }
        for ((column, key), ids) in self
            .columns
            .iter_mut()
            .zip(keys)
            .zip(&mut self.row_column_ids)
        {
            column.intern(std::slice::from_ref(key), ids)?;
        }
        self.fit_tuples()?;
        self.tuples.intern(
            &self.row_column_ids,
            &mut self.row_tuples,
            &mut self.row_partial_groups,
            groups,
        );
        // Groups are numbered in order of first appearance: a row whose group is the next
        // number introduces it.
        for (row, &group) in groups.iter().enumerate() {
            if group as usize == self.group_column_ids[0].len() {
                for (ids, row_ids) in self.group_column_ids.iter_mut().zip(&self.row_column_ids) {
                    ids.push(row_ids[row]);
                }
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.group_column_ids[0].len()
    }

    fn size(&self) -> usize {
        let ids = |lists: &[Vec<u32>]| lists.iter().map(|l| l.capacity() * 4).sum::<usize>();
        self.columns.iter().map(|c| c.size()).sum::<usize>()
            + self.tuples.size()
            + ids(&self.group_column_ids)
            + ids(&self.row_column_ids)
            + self.row_tuples.capacity() * 8
            + self.row_partial_groups.capacity() * 4
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let total = self.len();
        let n = emit_to.count(total);
        let mut keys = Vec::with_capacity(self.columns.len());
        for c in 0..self.columns.len() {
            // The column's distinct values in id order.
            let values = self.columns[c]
                .emit(EmitTo::All)?
                .pop()
                .ok_or_else(|| QuiverError::Internal("a key column emitted nothing".into()))?;
            let ids = arrow::array::UInt32Array::from(self.group_column_ids[c][..n].to_vec());
            keys.push(arrow::compute::take(&values, &ids, None)?);
            let mut fresh = new_group_values(std::slice::from_ref(&self.key_types[c]))?;
            if n < total {
                // Interning the distinct values in order gives each its old id back.
                let mut ids = Vec::new();
                fresh.intern(&[values], &mut ids)?;
            }
            self.columns[c] = fresh;
            self.group_column_ids[c].drain(..n);
        }
        if n < total {
            // Only the last table holds group numbers; the rest are renumbered from 0 there.
            match &mut self.tuples {
                TupleGroups::Packed { table, .. } => {
                    table.emit(emit_to)?;
                }
                TupleGroups::Folded { combiners } => {
                    if let Some(last) = combiners.last_mut() {
                        last.emit(emit_to)?;
                    }
                }
            }
        } else {
            self.tuples = TupleGroups::empty_packed(self.columns.len());
        }
        Ok(keys)
    }
}

/// Group ids for any key tuple, through the `arrow-row` comparable encoding.
pub struct RowGroupValues {
    converter: RowConverter,
    key_types: Vec<DataType>,
    table: HashTable<u32>,
    rows: Rows,
    group_hashes: Vec<u64>,
}

impl RowGroupValues {
    /// An empty mapping for key tuples of `key_types`.
    pub fn new(key_types: &[DataType]) -> Result<Self> {
        let fields = key_types
            .iter()
            .map(|t| SortField::new(t.clone()))
            .collect::<Vec<_>>();
        if !RowConverter::supports_fields(&fields) {
            return Err(QuiverError::Unsupported(format!(
                "group keys of types {key_types:?}"
            )));
        }
        let converter = RowConverter::new(fields)?;
        let rows = converter.empty_rows(0, 0);
        Ok(RowGroupValues {
            converter,
            key_types: key_types.to_vec(),
            table: HashTable::new(),
            rows,
            group_hashes: Vec::new(),
        })
    }
}

impl GroupValues for RowGroupValues {
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<u32>) -> Result<()> {
        if keys.len() != self.key_types.len() {
            return Err(QuiverError::Internal(format!(
                "{} key columns for {} key types",
                keys.len(),
                self.key_types.len()
            )));
        }
        let normalized = keys
            .iter()
            .map(normalize_floats)
            .collect::<Result<Vec<_>>>()?;
        let batch_rows = self.converter.convert_columns(&normalized)?;
        groups.clear();
        groups.reserve(batch_rows.num_rows());
        for row in batch_rows.iter() {
            let key = row.data();
            let hash = hash_bytes(key);
            let (rows, group_hashes) = (&self.rows, &self.group_hashes);
            let found = self.table.find(hash, |&g| {
                group_hashes[g as usize] == hash && rows.row(g as usize).data() == key
            });
            let group = match found {
                Some(&g) => g,
                None => {
                    let g = self.group_hashes.len() as u32;
                    self.rows.push(row);
                    self.group_hashes.push(hash);
                    let group_hashes = &self.group_hashes;
                    self.table
                        .insert_unique(hash, g, |&g| group_hashes[g as usize]);
                    g
                }
            };
            groups.push(group);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.group_hashes.len()
    }

    fn size(&self) -> usize {
        self.table.allocation_size()
            + self.rows.size()
            + self.group_hashes.capacity() * 8
            + self.converter.size()
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = emit_to.count(self.len());
        // Rows decode dictionaries to their value type; give the caller the key types back.
        let columns = self
            .converter
            .convert_rows(self.rows.iter().take(n))?
            .into_iter()
            .zip(&self.key_types)
            .map(|(column, key_type)| {
                if column.data_type() == key_type {
                    Ok(column)
                } else {
                    Ok(cast(&column, key_type)?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rest = self.converter.empty_rows(self.len() - n, 0);
        for row in self.rows.iter().skip(n) {
            rest.push(row);
        }
        self.rows = rest;
        self.group_hashes.drain(..n);
        self.table.clear();
        let group_hashes = &self.group_hashes;
        for (g, &hash) in group_hashes.iter().enumerate() {
            self.table
                .insert_unique(hash, g as u32, |&g| group_hashes[g as usize]);
        }
        Ok(columns)
    }
}

/// Maps `-0.0` to `0.0` and every NaN to one NaN, so equal SQL values encode equally.
pub(crate) fn normalize_floats(array: &ArrayRef) -> Result<ArrayRef> {
    fn normalize<T: ArrowPrimitiveType>(
        array: &ArrayRef,
        canonical: impl Fn(T::Native) -> T::Native,
    ) -> ArrayRef {
        Arc::new(array.as_primitive::<T>().unary::<_, T>(canonical))
    }
    Ok(match array.data_type() {
        DataType::Float64 => normalize::<Float64Type>(array, |v| {
            if v.is_nan() {
                f64::NAN
            } else if v == 0.0 {
                0.0
            } else {
                v
            }
        }),
        DataType::Float32 => normalize::<Float32Type>(array, |v| {
            if v.is_nan() {
                f32::NAN
            } else if v == 0.0 {
                0.0
            } else {
                v
            }
        }),
        _ => Arc::clone(array),
    })
}

fn single_key(keys: &[ArrayRef]) -> Result<&ArrayRef> {
    match keys {
        [key] => Ok(key),
        _ => Err(QuiverError::Internal(format!(
            "single-key group values given {} key columns",
            keys.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BinaryViewBuilder, BooleanArray, Float64Array, Int64Array, StringArray, StringViewArray,
        StringViewBuilder,
    };
    use quiver_core::rng::SplitMix64;

    #[test]
    fn slot_words_in_a_buffer_equal_those_of_the_key_alone() {
        let data: Vec<u8> = (0..40u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for start in 0..=data.len() {
            for len in 0..=data.len() - start {
                let key = &data[start..start + len];
                assert_eq!(
                    slot_words_in(&data, start, len),
                    slot_words(key),
                    "start {start}, len {len}"
                );
                let (head, tail) = slot_words(key);
                let three_words = key_words_in(&data, start, len);
                // Only a key followed by fewer than 16 bytes from its start has no branch-free
                // words (the caller reads them by length then).
                assert_eq!(three_words.is_none(), start + len.max(16) > data.len());
                if let Some(words) = three_words {
                    assert_eq!(
                        words,
                        (head, middle_word(key), tail),
                        "start {start}, len {len}"
                    );
                }
            }
        }
        // Keys of up to 16 bytes that differ in one byte or in length differ in words or length.
        let keys: Vec<Vec<u8>> = (0..=16)
            .flat_map(|len| [vec![b'a'; len], vec![0u8; len], (1..=len as u8).collect()])
            .collect();
        for a in &keys {
            for b in &keys {
                let same = (slot_words(a), a.len()) == (slot_words(b), b.len());
                assert_eq!(same, a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn keys_that_differ_in_one_byte_are_different_groups() {
        // Every length up to 40 (slot words alone, with the middle word, with the stored key),
        // every byte position: the flipped key is a group of its own, the original found again.
        let mut interner = BytesGroupValues::new(DataType::Binary, false);
        for len in 1..=40usize {
            let key: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(53)).collect();
            let group = interner.intern_key(&key);
            for at in 0..len {
                let mut other = key.clone();
                other[at] ^= 0x10;
                let before = interner.len();
                let other_group = interner.intern_key(&other);
                assert_ne!(other_group, group, "length {len}, byte {at}");
                assert!(other_group as usize >= before, "length {len}, byte {at}");
                assert_eq!(interner.intern_key(&key), group, "length {len}");
            }
        }
    }

    #[test]
    fn branching_and_branch_free_key_reads_find_the_same_groups() {
        // Batches of one length class take the branching reads, mixed ones the branch-free
        // reads (or, without NULLs, the lean loop), and batches whose first rows are all short
        // run the short-keys loop (leaving it for the long keys that come later, for good when
        // they are many; the lean loop likewise for keys over 24 bytes); the same key
        // must map to the same group whichever batch brings it, and new keys (NULL among them)
        // take the next ids in order of first appearance. Batches are slices of larger arrays,
        // so their offsets do not start at 0.
        let words = [
            "",
            "a",
            "abc",
            "seven b",
            "eight by",
            "sixteen bytes!!!",
            "a key of 17 bytes",
            "a key of twenty-four by",
            "a key of twenty-five byte",
            "a key of thirty-two bytes, nearl",
            "a key of more than thirty-two bytes",
        ];
        let mut rng = SplitMix64::new(5);
        let mut interner = BytesGroupValues::new(DataType::Utf8, true);
        let mut first_group = std::collections::HashMap::new();
        let mut groups = Vec::new();
        for batch in 0..84 {
            // One length class (branching reads), mixed around 8 bytes, longer keys; short keys
            // first, then every length; short keys and two long ones near the end. Every other
            // run of seven has no NULLs (the lean loop's batches); every third batch is a whole
            // array, its first key at the start of the bytes and its last at their end.
            let with_nulls = batch / 7 % 2 == 0;
            let pool_at = |row: usize| -> &[&str] {
                match batch % 7 {
                    0 => &words[3..6],
                    1 => &words[..3],
                    2 => &words[..7],
                    3 => &words[5..],
                    4 => &words,
                    5 if row < 100 => &words[..5],
                    5 => &words,
                    _ if row == 150 || row == 190 => &words[7..],
                    _ => &words[..5],
                }
            };
            let keys: Vec<Option<String>> = (0..220)
                .map(|row| {
                    let pool = pool_at(row);
                    let word = pool[rng.below(pool.len() as u64) as usize];
                    let null = with_nulls && rng.below(10) == 0;
                    (!null).then(|| format!("{word}{}", rng.below(3)))
                })
                .collect();
            let (offset, rows) = if batch % 3 == 0 { (0, 220) } else { (15, 200) };
            let array: ArrayRef = Arc::new(StringArray::from(keys.clone()).slice(offset, rows));
            interner.intern(&[array], &mut groups).unwrap();
            assert_eq!(groups.len(), rows);
            for (key, &group) in keys[offset..offset + rows].iter().zip(&groups) {
                let next = first_group.len() as u32;
                assert_eq!(
                    *first_group.entry(key.clone()).or_insert(next),
                    group,
                    "{key:?}"
                );
            }
        }
        assert_eq!(interner.len(), first_group.len());
    }

    /// A batch of four key columns with few distinct values each and about 10% NULLs.
    fn key_batch(rng: &mut SplitMix64, rows: usize) -> Vec<ArrayRef> {
        let mut pick = |distinct: u64| -> Option<u64> {
            let v = rng.below(distinct + distinct / 10 + 1);
            (v < distinct).then_some(v)
        };
        let ints: Int64Array = (0..rows).map(|_| pick(50).map(|v| v as i64 - 25)).collect();
        let texts: StringArray = (0..rows)
            .map(|_| pick(30).map(|v| format!("key {}", "x".repeat(v as usize))))
            .collect();
        let floats: Float64Array = (0..rows)
            .map(|_| pick(6).map(|v| [0.0, -0.0, 1.5, -2.25, f64::INFINITY, 1e300][v as usize]))
            .collect();
        let flags: BooleanArray = (0..rows).map(|_| pick(2).map(|v| v == 1)).collect();
        let views: StringViewArray = (0..rows)
            .map(|_| pick(4).map(|v| ["a", "", "a much longer key than twelve", "b"][v as usize]))
            .collect();
        vec![
            Arc::new(ints),
            Arc::new(texts),
            Arc::new(floats),
            Arc::new(flags),
            Arc::new(views),
        ]
    }

    #[test]
    fn string_views_map_keys_like_strings() {
        // Views of every length class (inline up to 12 bytes, in small data buffers beyond, so
        // keys sit at buffers' starts and ends; all inline, all buffered, or both often, which
        // read their words with and without a branch on the length), with and without NULLs,
        // interleaved with string and binary batches of the same keys: each key keeps one
        // group, and new keys take the next ids in order of first appearance.
        let mut rng = SplitMix64::new(11);
        let mut interner = BytesGroupValues::new(DataType::Utf8, true);
        let mut first_group = std::collections::HashMap::new();
        let mut groups = Vec::new();
        for batch in 0..60 {
            let (shortest, longest) = [(0, 13), (0, 25), (0, 40), (13, 25)][batch % 4];
            let keys: Vec<Option<String>> = (0..300)
                .map(|_| {
                    let len = (shortest + rng.below(longest - shortest)) as usize;
                    let text: String = (0..len)
                        .map(|at| {
                            if at + 1 == len {
                                b'a' + rng.below(4) as u8
                            } else {
                                b'k'
                            }
                        })
                        .map(char::from)
                        .collect();
                    (batch % 3 != 0 || rng.below(10) != 0).then_some(text)
                })
                .collect();
            let array: ArrayRef = match batch % 5 {
                0 => Arc::new(StringArray::from(keys.clone())),
                1 => {
                    let mut builder = BinaryViewBuilder::new().with_fixed_block_size(64);
                    for key in &keys {
                        builder.append_option(key.as_deref());
                    }
                    Arc::new(builder.finish())
                }
                _ => {
                    let mut builder = StringViewBuilder::new().with_fixed_block_size(64);
                    for key in &keys {
                        builder.append_option(key.as_deref());
                    }
                    Arc::new(builder.finish())
                }
            };
            interner.intern(&[array], &mut groups).unwrap();
            assert_eq!(groups.len(), keys.len());
            for (key, &group) in keys.iter().zip(&groups) {
                let next = first_group.len() as u32;
                assert_eq!(
                    *first_group.entry(key.clone()).or_insert(next),
                    group,
                    "batch {batch}, {key:?}"
                );
            }
        }
        assert_eq!(interner.len(), first_group.len());
    }

    #[test]
    fn long_key_middles_compare_every_byte() {
        for len in 17..=40 {
            let key: Vec<u8> = (0..len as u8).collect();
            assert!(middles_equal(&key, &key.clone()));
            for at in 8..len - 8 {
                let mut other = key.clone();
                other[at] ^= 0x40;
                assert!(!middles_equal(&other, &key), "length {len}, byte {at}");
            }
            assert!(!middles_equal(&key[..len - 1], &key));
        }
    }

    /// The composite mapping numbers groups and emits keys exactly as the `arrow-row` mapping
    /// does (both number groups in order of first appearance), through interleaved partial emits,
    /// with id tuples packed in 64 bits, and with a bit budget so small that the packed widths
    /// grow and then give way to the pairwise fold mid-stream.
    #[test]
    fn composite_keys_agree_with_the_row_format() {
        for packed_bits_limit in [64, 12, 9] {
            composite_keys_agree_with_the_row_format_within(packed_bits_limit);
        }
    }

    fn composite_keys_agree_with_the_row_format_within(packed_bits_limit: u32) {
        let mut rng = SplitMix64::new(5);
        for columns in [vec![0, 1], vec![1, 3], vec![2, 0, 4], vec![4, 3, 2, 1, 0]] {
            let types: Vec<DataType> = key_batch(&mut rng, 1)
                .iter()
                .map(|a| a.data_type().clone())
                .collect();
            let types: Vec<DataType> = columns.iter().map(|&c| types[c].clone()).collect();
            let mut composite =
                CompositeGroupValues::with_packed_bits_limit(&types, packed_bits_limit).unwrap();
            let mut folded = false;
            let mut rows = RowGroupValues::new(&types).unwrap();
            for round in 0..40 {
                let size = [0, 1, 7, 300, 2000][round % 5];
                let batch = key_batch(&mut rng, size);
                let keys: Vec<ArrayRef> = columns.iter().map(|&c| batch[c].clone()).collect();
                let (mut by_composite, mut by_rows) = (Vec::new(), Vec::new());
                composite.intern(&keys, &mut by_composite).unwrap();
                rows.intern(&keys, &mut by_rows).unwrap();
                assert_eq!(by_composite, by_rows, "{columns:?} round {round}");
                folded |= matches!(composite.tuples, TupleGroups::Folded { .. });
                assert_eq!(composite.len(), rows.len());
                if round % 3 == 2 {
                    let emit_to = match round % 4 {
                        0 => EmitTo::All,
                        _ => EmitTo::First(rng.below(composite.len() as u64 + 2) as usize),
                    };
                    let emitted = composite.emit(emit_to).unwrap();
                    let expected = rows.emit(emit_to).unwrap();
                    assert_eq!(emitted.len(), expected.len());
                    for (a, b) in emitted.iter().zip(&expected) {
                        assert_eq!(a.as_ref(), b.as_ref(), "{columns:?} round {round}");
                    }
                    assert_eq!(composite.len(), rows.len());
                }
            }
            assert!(composite.size() > 0);
            // Ints (50 values and NULL) and texts (30 and NULL) need 6 and 5 bits.
            if packed_bits_limit == 9 && columns.len() > 2 {
                assert!(folded, "{columns:?} never left the packed form");
            }
            if packed_bits_limit == 64 {
                assert!(!folded, "{columns:?} left the packed form");
            }
        }
    }

    #[test]
    fn id_bits_hold_every_id_below_the_count() {
        assert_eq!(id_bits(0), 0);
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(100), 7);
        assert_eq!(id_bits(128), 7);
        assert_eq!(id_bits(129), 8);
        assert_eq!(id_bits(1 << 32), 32);
    }
}
