//! Large random-access tables on 2 MiB pages where the OS allows it.
//!
//! A hash table or cell array of tens of megabytes is probed at random; on 4 KiB pages nearly
//! every probe also misses the TLB and walks the page tables. Linux backs memory with 2 MiB
//! pages only where `madvise(MADV_HUGEPAGE)` asks for them (the common `madvise` setting of
//! transparent huge pages), and only for pages first touched after the advice, so tables are
//! advised between allocation and first write. An allocator may hand back memory it had
//! already written (a long-running process reuses its heap), whose 4 KiB pages stay; so once
//! written, a new table's pages are also collapsed (`MADV_COLLAPSE`, Linux 6.1 and later),
//! which copies such pages into 2 MiB ones and leaves huge pages as they are. Nothing is
//! advised when the system disables transparent huge pages, nor off Linux.

/// Tables below this size are left alone: their 4 KiB pages fit the TLB's reach.
const ADVISE_FROM_BYTES: usize = 4 << 20;

/// Makes `vec` hold `len` copies of `value` and nothing else, reusing its allocation when it
/// is large enough; a new allocation is advised before it is written.
pub(crate) fn refill<T: Clone>(vec: &mut Vec<T>, len: usize, value: T) {
    vec.clear();
    let fresh = len > vec.capacity();
    if fresh {
        *vec = with_advised_capacity(len);
    }
    vec.resize(len, value);
    if fresh {
        advise_pages(vec, vec.len(), COLLAPSE);
    }
}

/// [`Vec::resize`] of per-group state: growing past the capacity doubles it into a new advised
/// allocation when the result is large (the existing elements are moved over).
pub(crate) fn resize<T: Clone>(vec: &mut Vec<T>, len: usize, value: T) {
    if len > vec.capacity() && len.saturating_mul(std::mem::size_of::<T>()) >= ADVISE_FROM_BYTES {
        let mut grown = with_advised_capacity(len.max(vec.capacity().saturating_mul(2)));
        grown.append(vec);
        *vec = grown;
        vec.resize(len, value);
        advise_pages(vec, vec.len(), COLLAPSE);
        return;
    }
    vec.resize(len, value);
}

/// An empty vector with room for `capacity` elements, its pages advised.
fn with_advised_capacity<T>(capacity: usize) -> Vec<T> {
    let vec = Vec::with_capacity(capacity);
    advise_pages(&vec, vec.capacity(), HUGE_PAGES);
    vec
}

#[cfg(target_os = "linux")]
const HUGE_PAGES: i32 = libc::MADV_HUGEPAGE;
#[cfg(not(target_os = "linux"))]
const HUGE_PAGES: i32 = 0;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const COLLAPSE: i32 = libc::MADV_COLLAPSE;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const COLLAPSE: i32 = 0;

/// Gives `advice` for the whole pages among the first `elements` of `vec`'s allocation.
fn advise_pages<T>(vec: &Vec<T>, elements: usize, advice: i32) {
    debug_assert!(elements <= vec.capacity());
    let bytes = elements.saturating_mul(std::mem::size_of::<T>());
    if bytes < ADVISE_FROM_BYTES || advice == 0 || !huge_pages_enabled() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads a system constant.
        let page_bytes = match usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) {
            Ok(bytes) if bytes.is_power_of_two() => bytes,
            _ => return,
        };
        let start = vec.as_ptr() as usize;
        let first_page = start.next_multiple_of(page_bytes);
        let end_page = (start + bytes) & !(page_bytes - 1);
        if end_page <= first_page {
            return;
        }
        debug_assert!(first_page >= start && end_page <= start + bytes);
        // SAFETY: the range is whole pages inside this vector's live allocation; the advice
        // changes how those pages are backed, never their contents, and it cannot fault. A
        // failure (e.g. transparent huge pages disabled) leaves the pages as they were.
        unsafe {
            libc::madvise(
                first_page as *mut libc::c_void,
                end_page - first_page,
                advice,
            );
        }
    }
}

/// Whether the system allows transparent huge pages at all (its setting is not `never`).
fn huge_pages_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|setting| !setting.contains("[never]"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_and_resize_keep_contents() {
        let big = ADVISE_FROM_BYTES / 8 + 3;
        let mut vec: Vec<u64> = vec![7; 5];
        resize(&mut vec, big, 1);
        assert_eq!(vec.len(), big);
        assert_eq!(&vec[..6], &[7, 7, 7, 7, 7, 1]);
        assert!(vec[5..].iter().all(|&v| v == 1));
        resize(&mut vec, 2 * big + 1, 2);
        assert_eq!(vec[big - 1], 1);
        assert_eq!(vec[big], 2);
        assert_eq!(vec.len(), 2 * big + 1);
        resize(&mut vec, 4, 9);
        assert_eq!(vec, vec![7; 4]);
        refill(&mut vec, 10, 4);
        assert_eq!(vec, vec![4; 10]);
        refill(&mut vec, 3 * big, 5);
        assert_eq!(vec.len(), 3 * big);
        assert!(vec.iter().all(|&v| v == 5));
    }
}
