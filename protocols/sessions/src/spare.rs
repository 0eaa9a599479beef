//! A worker's spare connection buffers.
//!
//! An idle keep-alive HTTP/1.1 connection holds no buffer, so ten thousand idle connections cost
//! their sockets and little else. A connection that becomes busy takes a spare buffer here
//! instead of allocating one, and gives its buffers back when it goes idle again: a busy worker
//! recycles a handful of buffers rather than allocating and freeing two per request. At most
//! [`KEEP`] spares of at most [`MAX_CAPACITY`] bytes each are kept per worker thread.

use std::cell::RefCell;

use bytes::BytesMut;

/// Most spare buffers one worker thread keeps.
const KEEP: usize = 32;
/// Larger buffers (a connection that read a big body) are freed rather than kept.
const MAX_CAPACITY: usize = 64 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer: a spare one if there is one (with its capacity), else a new, unallocated
/// one.
pub(crate) fn take() -> BytesMut {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_default()
}

/// Hands `buf` back for another connection of this thread (or frees it).
pub(crate) fn give(mut buf: BytesMut) {
    if buf.capacity() == 0 || buf.capacity() > MAX_CAPACITY {
        return;
    }
    buf.clear();
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEEP {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled_empty_and_bounded() {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        buf.extend_from_slice(b"left over");
        give(buf);
        let again = take();
        assert!(again.is_empty());
        assert!(again.capacity() >= 8 * 1024);
        // Unallocated and oversized buffers are not kept.
        give(BytesMut::new());
        give(BytesMut::with_capacity(MAX_CAPACITY + 1));
        assert_eq!(take().capacity(), 0);
        // No more than KEEP are kept.
        for _ in 0..KEEP + 5 {
            give(BytesMut::with_capacity(1024));
        }
        let kept = std::iter::from_fn(|| Some(take()))
            .take_while(|b| b.capacity() > 0)
            .count();
        assert_eq!(kept, KEEP);
    }
}
