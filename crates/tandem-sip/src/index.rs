//! The compact span index a [`crate::Message`] keeps over its buffer.
//!
//! Header-section positions are `u16` offsets from the message's *origin* (the first byte of the
//! start line): the header section is at most [`crate::MAX_HEADER_SECTION`] bytes, so they always
//! fit, and an index entry takes 12 bytes instead of 20 with absolute `u32` spans.

use crate::inline_vec::InlineVec;
use crate::ParseError;
use std::sync::Arc;

/// Byte range `start..end` in a buffer (absolute; the body and the editor's arena use it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // Offsets fit: messages are bounded by MAX_MESSAGE.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Byte range `start..end` of the header section, relative to the message's origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rel {
    pub(crate) start: u16,
    pub(crate) end: u16,
}

/// A header-section offset relative to `origin`, or [`ParseError::TooLarge`] past 64 KiB.
pub(crate) fn rel_offset(pos: usize, origin: usize) -> Result<u16, ParseError> {
    u16::try_from(pos - origin).map_err(|_| ParseError::TooLarge)
}

impl Rel {
    /// The absolute range `start..end` relative to `origin`.
    pub(crate) fn new(start: usize, end: usize, origin: usize) -> Result<Rel, ParseError> {
        Ok(Rel {
            start: rel_offset(start, origin)?,
            end: rel_offset(end, origin)?,
        })
    }

    /// Where `part` (a sub-slice of `outer`) sits, relative to `outer`'s first byte plus `base`.
    /// An empty `part` gives an empty range (it may be a literal rather than a sub-slice).
    pub(crate) fn of_part(outer: &str, part: &str, base: u16) -> Rel {
        let offset = (part.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize);
        if part.is_empty() || offset + part.len() > outer.len() {
            return Rel::default();
        }
        // Both offsets are inside the header section, so they fit in u16.
        let start = base.wrapping_add(offset as u16);
        Rel {
            start,
            end: start.wrapping_add(part.len() as u16),
        }
    }

    /// The absolute span, given the origin.
    pub(crate) fn at(self, origin: u32) -> Span {
        Span {
            start: origin + u32::from(self.start),
            end: origin + u32::from(self.end),
        }
    }
}

/// One indexed header line (offsets from the origin).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderEntry {
    /// [`crate::HeaderName`] kind id of the name.
    pub(crate) kind: u8,
    /// The trimmed value contains folded line breaks.
    pub(crate) folded: bool,
    /// Start of the line (the name starts the line).
    pub(crate) line_start: u16,
    pub(crate) name_len: u16,
    pub(crate) value_start: u16,
    pub(crate) value_len: u16,
    /// Line length through its CRLF (continuation lines included).
    pub(crate) line_len: u16,
}

impl HeaderEntry {
    fn span(origin: u32, start: u16, len: u16) -> Span {
        let start = origin + u32::from(start);
        Span {
            start,
            end: start + u32::from(len),
        }
    }
    pub(crate) fn name_span(&self, origin: u32) -> Span {
        Self::span(origin, self.line_start, self.name_len)
    }
    pub(crate) fn value_span(&self, origin: u32) -> Span {
        Self::span(origin, self.value_start, self.value_len)
    }
    pub(crate) fn line_span(&self, origin: u32) -> Span {
        Self::span(origin, self.line_start, self.line_len)
    }
    /// The value's range relative to the origin (a value ends before its line's CRLF, so it fits).
    pub(crate) fn value(&self) -> Rel {
        Rel {
            start: self.value_start,
            end: self.value_start + self.value_len,
        }
    }
}

/// Header lines indexed on the stack while parsing; more spill to the heap.
const SCRATCH_HEADERS: usize = 32;

/// The index being built by `parse`.
pub(crate) type ScratchIndex = InlineVec<HeaderEntry, SCRATCH_HEADERS>;

/// The header index of one message, shared by its clones.
///
/// One exact-size allocation per parsed message. Kept inline instead (16 entries, 0 allocations)
/// the message was twice the size, and passing it by value and cloning it (as the transaction layer
/// and the B2BUA do) cost more than the allocation saves: see `benches/codec.rs`.
#[derive(Debug, Clone)]
pub(crate) struct HeaderIndex(Arc<[HeaderEntry]>);

impl HeaderIndex {
    pub(crate) fn from_scratch(scratch: &ScratchIndex) -> HeaderIndex {
        HeaderIndex(Arc::from(scratch.as_slice()))
    }
    pub(crate) fn as_slice(&self) -> &[HeaderEntry] {
        &self.0
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}
