//! Byte-splicing edits of a parsed message.

use crate::header_name::{HeaderName, OTHER_KIND};
use crate::index::Span;
use crate::inline_vec::InlineVec;
use crate::lex::{fmt_u64, CommaPieces};
use crate::message::Message;

/// Edited header lines kept inline; more spill to the heap.
const INLINE_LINES: usize = 40;
/// First arena reservation: enough for a Via, a Contact and a few small values.
const ARENA_START: usize = 256;
/// Marks an [`EditLine`] that is not an original line.
const NEW_LINE: u16 = u16::MAX;

/// One header line of the edited message: an original line (by index) or a new one whose name and
/// value live in the editor's arena.
#[derive(Debug, Clone, Copy, Default)]
struct EditLine {
    kind: u8,
    /// Index into the message's header index, or [`NEW_LINE`].
    orig: u16,
    /// Name text in the arena (new lines with an `Other` name only).
    name: Span,
    /// Value text in the arena (new lines only).
    value: Span,
    /// Leading comma-list values removed by `pop_first_value`.
    skip: u16,
}

/// Byte-splicing editor. Operations are recorded, then `finish` writes the new message in one pass and
/// one allocation: every byte not touched by an operation is copied verbatim, header order is kept.
/// Content-Length is always rewritten to the final body length (long form `Content-Length`, replacing a
/// compact `l:` in place).
///
/// Operations apply in call order to the edited state (a `pop_first_value` after a `push_front` pops
/// the pushed value). New text is kept in one arena (one allocation for a typical proxy hop), so a
/// parse + edit + finish costs two allocations.
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
    lines: InlineVec<EditLine, INLINE_LINES>,
    arena: Vec<u8>,
    start_line: Option<Span>,
    body: Option<Span>,
}

/// Where the output goes: counting pass, then writing pass.
trait Sink {
    fn put(&mut self, b: &[u8]);
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

impl<'m> Editor<'m> {
    pub(crate) fn new(msg: &'m Message) -> Editor<'m> {
        let mut lines = InlineVec::new();
        for (i, e) in msg.headers.as_slice().iter().enumerate() {
            lines.push(EditLine {
                kind: e.kind,
                orig: i as u16,
                ..EditLine::default()
            });
        }
        Editor {
            msg,
            lines,
            arena: Vec::new(),
            start_line: None,
            body: None,
        }
    }

    fn stash(&mut self, b: &[u8]) -> Span {
        if self.arena.capacity() - self.arena.len() < b.len() {
            self.arena.reserve(b.len().max(ARENA_START));
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(b);
        Span::new(start, self.arena.len())
    }

    fn arena_text(&self, s: Span) -> &str {
        std::str::from_utf8(&self.arena[s.range()]).unwrap_or_default()
    }

    fn new_line(&mut self, name: HeaderName<'_>, value: &str) -> EditLine {
        let name = name.classified();
        let kind = name.kind_id();
        let name_span = if kind == OTHER_KIND {
            self.stash(name.as_str().as_bytes())
        } else {
            Span::default()
        };
        let value = self.stash(value.as_bytes());
        EditLine {
            kind,
            orig: NEW_LINE,
            name: name_span,
            value,
            skip: 0,
        }
    }

    fn line_name(&self, l: &EditLine) -> &str {
        if l.orig != NEW_LINE {
            self.msg
                .name_of(&self.msg.headers.as_slice()[usize::from(l.orig)])
        } else if l.kind == OTHER_KIND {
            self.arena_text(l.name)
        } else {
            known_name(l.kind)
        }
    }

    fn line_value(&self, l: &EditLine) -> &str {
        if l.orig != NEW_LINE {
            self.msg
                .raw_value(&self.msg.headers.as_slice()[usize::from(l.orig)])
        } else {
            self.arena_text(l.value)
        }
    }

    fn matches(&self, l: &EditLine, name: HeaderName<'_>) -> bool {
        l.kind == name.kind_id()
            && (l.kind != OTHER_KIND || HeaderName::Other(self.line_name(l)).is(name))
    }

    fn position(&self, name: HeaderName<'_>) -> Option<usize> {
        self.lines
            .as_slice()
            .iter()
            .position(|l| self.matches(l, name))
    }

    /// Replaces the start line (without CRLF), e.g. `INVITE sip:100@10.0.0.5:5080 SIP/2.0`.
    pub fn set_start_line(&mut self, line: &str) -> &mut Self {
        self.start_line = Some(self.stash(line.as_bytes()));
        self
    }

    /// Inserts a header line before all others of the same name (or at the top of the header section
    /// when there is none) — e.g. push Via.
    pub fn push_front(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        let name = name.classified();
        let at = self.position(name).unwrap_or(0);
        let line = self.new_line(name, value);
        self.lines.insert(at, line);
        self
    }

    /// Appends a header line after the last header (before Content-Length if Tandem writes it).
    pub fn append(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        let line = self.new_line(name, value);
        let n = self.lines.len();
        let cl = HeaderName::ContentLength.kind_id();
        let at = if n > 0 && self.lines.as_slice()[n - 1].kind == cl {
            n - 1
        } else {
            n
        };
        self.lines.insert(at, line);
        self
    }

    /// Removes the first *value* of a (possibly comma-list) header — e.g. pop Via: if the top Via line
    /// holds `a, b`, only `a` is removed.
    pub fn pop_first_value(&mut self, name: HeaderName<'_>) -> &mut Self {
        let name = name.classified();
        if let Some(i) = self.position(name) {
            let l = self.lines.as_slice()[i];
            let values = CommaPieces::new(self.line_value(&l))
                .take(usize::from(l.skip) + 2)
                .count();
            if values > usize::from(l.skip) + 1 {
                self.lines.as_mut_slice()[i].skip += 1;
            } else {
                self.lines.remove(i);
            }
        }
        self
    }

    /// Removes every line of this header.
    pub fn remove_all(&mut self, name: HeaderName<'_>) -> &mut Self {
        let name = name.classified();
        while let Some(i) = self.position(name) {
            self.lines.remove(i);
        }
        self
    }

    /// Replaces every line of this header by a single line with `value` at the first one's position
    /// (appended when absent).
    pub fn set(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        let name = name.classified();
        match self.position(name) {
            Some(i) => {
                let line = self.new_line(name, value);
                self.lines.as_mut_slice()[i] = line;
                while let Some(j) = self.lines.as_slice()[i + 1..]
                    .iter()
                    .position(|l| self.matches(l, name))
                {
                    self.lines.remove(i + 1 + j);
                }
            }
            None => {
                self.append(name, value);
            }
        }
        self
    }

    /// Max-Forwards − 1 (70 when absent, appended). Caller answers 483 itself when it was 0.
    pub fn decrement_max_forwards(&mut self) -> &mut Self {
        let mut buf = [0u8; 20];
        let current = self.position(HeaderName::MaxForwards).and_then(|i| {
            let line = self.lines.as_slice()[i];
            crate::lex::parse_u32(self.line_value(&line))
        });
        let n = current.map_or(70, |m| m.saturating_sub(1));
        let text = fmt_u64(u64::from(n), &mut buf);
        let text = std::str::from_utf8(text).unwrap_or("0");
        self.set(HeaderName::MaxForwards, text)
    }

    /// Replaces the body; `content_type` replaces Content-Type when `Some`, and an empty body with
    /// `None` removes Content-Type.
    pub fn set_body(&mut self, content_type: Option<&str>, body: &[u8]) -> &mut Self {
        self.body = Some(self.stash(body));
        match content_type {
            Some(ct) => {
                self.set(HeaderName::ContentType, ct);
            }
            None if body.is_empty() => {
                self.remove_all(HeaderName::ContentType);
            }
            None => {}
        }
        self
    }

    fn emit(&self, out: &mut impl Sink) {
        match self.start_line {
            Some(s) => out.put(&self.arena[s.range()]),
            None => out.put(self.msg.start_line_bytes()),
        }
        out.put(b"\r\n");
        let body: &[u8] = match self.body {
            Some(s) => &self.arena[s.range()],
            None => self.msg.body_bytes(),
        };
        let mut num = [0u8; 20];
        let cl_text = fmt_u64(body.len() as u64, &mut num);
        let cl_kind = HeaderName::ContentLength.kind_id();
        let mut wrote_cl = false;
        for l in self.lines.as_slice() {
            if l.kind == cl_kind {
                if !wrote_cl {
                    put_line(out, b"Content-Length", cl_text);
                    wrote_cl = true;
                }
                continue;
            }
            if l.orig != NEW_LINE && l.skip == 0 {
                let e = &self.msg.headers.as_slice()[usize::from(l.orig)];
                out.put(self.msg.line_bytes(e));
                continue;
            }
            let value = self.line_value(l);
            // A new line is written whole; an original one without its popped leading values.
            let rest = if l.skip == 0 {
                value
            } else {
                match CommaPieces::new(value).nth(usize::from(l.skip)) {
                    Some((a, _)) => &value[a..],
                    None => continue,
                }
            };
            put_line(out, self.line_name(l).as_bytes(), rest.as_bytes());
        }
        if !wrote_cl {
            put_line(out, b"Content-Length", cl_text);
        }
        out.put(b"\r\n");
        out.put(body);
    }

    /// Writes the edited message.
    pub fn finish(&self) -> bytes::Bytes {
        let mut count = Count(0);
        self.emit(&mut count);
        let mut out = Vec::with_capacity(count.0);
        self.emit(&mut out);
        // len == capacity, so the conversion does not allocate again.
        bytes::Bytes::from(out)
    }
}

fn put_line(out: &mut impl Sink, name: &[u8], value: &[u8]) {
    out.put(name);
    out.put(b": ");
    out.put(value);
    out.put(b"\r\n");
}

/// Long name of a known kind id.
fn known_name(kind: u8) -> &'static str {
    crate::header_name::name_of_kind(kind)
}
