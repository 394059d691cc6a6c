//! A vector that keeps its first `N` elements inline and spills to the heap past that.

/// Fixed inline capacity with heap fallback; used for the header index and the edit list so a
/// typical message needs no allocation for either.
#[derive(Debug, Clone)]
pub(crate) struct InlineVec<T: Copy + Default, const N: usize> {
    len: usize,
    inline: [T; N],
    heap: Vec<T>,
}

impl<T: Copy + Default, const N: usize> InlineVec<T, N> {
    pub(crate) fn new() -> Self {
        InlineVec {
            len: 0,
            inline: [T::default(); N],
            heap: Vec::new(),
        }
    }

    fn spilled(&self) -> bool {
        self.len > N || !self.heap.is_empty()
    }

    fn spill(&mut self) {
        if !self.spilled() {
            self.heap.reserve(N * 2);
            self.heap.extend_from_slice(&self.inline[..self.len]);
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, v: T) {
        if self.len < N && self.heap.is_empty() {
            self.inline[self.len] = v;
            self.len += 1;
        } else {
            self.insert(self.len, v);
        }
    }

    /// Appends a default element and returns it, for filling in place (no temporary).
    #[inline]
    pub(crate) fn push_slot(&mut self) -> &mut T {
        if self.len < N && self.heap.is_empty() {
            self.len += 1;
            &mut self.inline[self.len - 1]
        } else {
            self.insert(self.len, T::default());
            let last = self.len - 1;
            &mut self.as_mut_slice()[last]
        }
    }

    pub(crate) fn insert(&mut self, at: usize, v: T) {
        let at = at.min(self.len);
        if self.len >= N {
            self.spill();
        }
        if self.spilled() {
            self.heap.insert(at, v);
        } else {
            self.inline[self.len] = v;
            self.inline[at..=self.len].rotate_right(1);
        }
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, at: usize) {
        if at >= self.len {
            return;
        }
        if self.spilled() {
            self.heap.remove(at);
        } else {
            self.inline[at..self.len].rotate_left(1);
        }
        self.len -= 1;
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        if self.spilled() {
            &self.heap
        } else {
            &self.inline[..self.len]
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        if self.spilled() {
            &mut self.heap
        } else {
            &mut self.inline[..self.len]
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_and_edit() {
        let mut v: InlineVec<u32, 3> = InlineVec::new();
        for i in 0..5 {
            v.push(i);
        }
        assert_eq!(v.as_slice(), &[0, 1, 2, 3, 4]);
        v.insert(0, 9);
        v.remove(2);
        assert_eq!(v.as_slice(), &[9, 0, 2, 3, 4]);
        let mut w: InlineVec<u32, 4> = InlineVec::new();
        w.push(1);
        w.push(2);
        w.insert(1, 7);
        w.remove(0);
        w.as_mut_slice()[0] = 8;
        assert_eq!(w.as_slice(), &[8, 2]);
        assert_eq!(w.len(), 2);
    }
}
