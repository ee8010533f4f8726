//! The JSON grammar, parsed into the tape's nodes.

use super::{Kind, Node, Tape, MAX_DEPTH};

/// The JSON parser: a value at a time, appending nodes to the tape.
pub(super) struct Parser<'b, 't> {
    pub(super) b: &'b [u8],
    pub(super) i: usize,
    pub(super) tape: &'t mut Tape,
}

impl Parser<'_, '_> {
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    pub(super) fn value(&mut self, depth: u32) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => self.container(depth, b'}'),
            b'[' => self.container(depth, b']'),
            b'"' => self.string(),
            b't' => self.literal(b"true", Kind::True),
            b'f' => self.literal(b"false", Kind::False),
            b'n' => self.literal(b"null", Kind::Null),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Option<()> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.tape.nodes.push(Node::leaf(kind, self.i, self.i));
        self.i += word.len();
        Some(())
    }

    fn container(&mut self, depth: u32, close: u8) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let object = close == b'}';
        let at = self.tape.nodes.len();
        let kind = if object { Kind::Obj } else { Kind::Arr };
        self.tape.nodes.push(Node::leaf(kind, 0, 0));
        self.i += 1;
        self.ws();
        let mut len = 0u32;
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
        } else {
            loop {
                if object {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return None;
                    }
                    self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                }
                self.value(depth + 1)?;
                len += 1;
                self.ws();
                match *self.b.get(self.i)? {
                    b',' => self.i += 1,
                    c if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = self.tape.nodes.len() as u32;
        let node = &mut self.tape.nodes[at];
        node.len = len;
        node.end = end;
        Some(())
    }

    fn string(&mut self) -> Option<()> {
        let start = self.i + 1;
        let mut i = start;
        // Plain text up to the closing quote or the first escape. Most strings are names, tags
        // and short values: a byte loop beats a vectorized search's setup (measured in perf:
        // memchr2 took 8% of the decoding thread).
        loop {
            match *self.b.get(i)? {
                b'"' => {
                    self.tape.nodes.push(Node::leaf(Kind::Str, start, i));
                    self.i = i + 1;
                    return Some(());
                }
                b'\\' => break,
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
        i = start;
        let text_start = self.tape.text.len();
        loop {
            let stop = i + memchr::memchr2(b'"', b'\\', &self.b[i..])?;
            let plain = &self.b[i..stop];
            if plain.iter().any(|&c| c < 0x20) {
                return None;
            }
            // Valid UTF-8: the whole document was checked, and quotes and backslashes are ASCII.
            self.tape.text.push_str(std::str::from_utf8(plain).ok()?);
            if self.b[stop] == b'"' {
                self.i = stop + 1;
                break;
            }
            i = self.escape(stop + 1)?;
        }
        let end = self.tape.text.len();
        self.tape
            .nodes
            .push(Node::leaf(Kind::EscStr, text_start, end));
        Some(())
    }

    /// Decodes the escape after a backslash at `i - 1`; returns the index after it.
    fn escape(&mut self, i: usize) -> Option<usize> {
        let c = match *self.b.get(i)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4(i + 1)?;
                let (code, next) = match hi {
                    0xD800..=0xDBFF => {
                        if self.b.get(i + 5..i + 7)? != b"\\u" {
                            return None;
                        }
                        let lo = self.hex4(i + 7)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return None;
                        }
                        (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), i + 11)
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => (hi, i + 5),
                };
                self.tape.text.push(char::from_u32(code)?);
                return Some(next);
            }
            _ => return None,
        };
        self.tape.text.push(c);
        Some(i + 1)
    }

    fn hex4(&self, i: usize) -> Option<u32> {
        let digits = self.b.get(i..i + 4)?;
        digits
            .iter()
            .try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
    }

    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let start = self.i;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        let int_start = i;
        let n = digits(&mut i);
        if n == 0 || (b[int_start] == b'0' && n > 1) {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        self.tape.nodes.push(Node::leaf(Kind::Num, start, i));
        self.i = i;
        Some(())
    }
}
