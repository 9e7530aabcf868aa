//! The process allocator: the system allocator, except that very large
//! allocations are reserved lazily (`mmap` with `MAP_NORESERVE`).
//!
//! Why: the request decoders of the `kafka-protocol` crate (0.18) size a
//! `Vec` from an array length read off the wire before decoding a single
//! element (upstream pull request #152 is still open). An 18-byte request
//! announcing two billion topics asks for ~150 GB up front; the system
//! allocator refuses and Rust aborts the whole broker. Reserved lazily, the
//! allocation costs address space only: the decoder runs out of input after
//! the first element, returns an error, the connection is closed and the
//! mapping is released, having committed a page or two.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily.
const LAZY_THRESHOLD: usize = 1 << 30;
const PAGE: usize = 4096;

/// System allocator with lazy reservation of huge blocks.
pub struct WeirAllocator;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE
}

// SAFETY: every block comes from either `System` or a private anonymous
// mapping of at least `layout.size()` bytes, page-aligned (so aligned for any
// `align <= PAGE`), and is returned to the same source, chosen by the same
// size test on the same layout.
unsafe impl GlobalAlloc for WeirAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(&layout) {
            return unsafe { System.alloc(layout) };
        }
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_reserved_lazily_and_usable() {
        let a = WeirAllocator;
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "64 GiB of address space must be reservable");
            *p = 7;
            *p.add((64 << 30) - 1) = 9;
            a.dealloc(p, layout);
            let small = Layout::from_size_align(100, 8).unwrap();
            let s = a.alloc_zeroed(small);
            assert_eq!(*s.add(99), 0);
            *s = 5;
            let big = a.realloc(s, small, LAZY_THRESHOLD);
            assert_eq!(*big, 5);
            let back = a.realloc(big, Layout::from_size_align(LAZY_THRESHOLD, 8).unwrap(), 10);
            assert_eq!(*back, 5);
            a.dealloc(back, Layout::from_size_align(10, 8).unwrap());
        }
    }
}
