//! The Extensible Prioritization Scheme for HTTP (RFC 9218): what a client asks of a response's
//! delivery, read from the `Priority` request field or from a PRIORITY_UPDATE frame (HTTP/2
//! type 0x10, HTTP/3 type 0xF0700).
//!
//! The value is a Structured Fields Dictionary (RFC 8941 §3.2) with two parameters that matter
//! here: `u`, the urgency (an Integer 0..=7, 0 the most urgent, default 3), and `i`, whether the
//! client uses the response incrementally (a Boolean, default false). RFC 9218 §4: a parameter
//! of the wrong type or out of range is ignored, and so are unknown ones; a value that does not
//! parse as a Dictionary is ignored as a whole. So parsing never fails: it yields the defaults.

/// The request field (§5). A constant name: looking it up in a request's map parses nothing.
pub const FIELD: http::HeaderName = http::HeaderName::from_static("priority");

/// A response's priority parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// 0 (most urgent) to 7.
    pub urgency: u8,
    /// The client processes the response as it arrives: responses of one urgency that are
    /// incremental share the bandwidth; those that are not are sent one after the other.
    pub incremental: bool,
}

impl Default for Priority {
    fn default() -> Self {
        Priority {
            urgency: 3,
            incremental: false,
        }
    }
}

impl Priority {
    /// The parameters in one field value (several `Priority` field lines joined with `,`
    /// form one value, as for any list-based field).
    pub fn parse(value: &[u8]) -> Priority {
        let mut p = Priority::default();
        let mut parser = Parser { s: value, at: 0 };
        let mut urgency = None;
        let mut incremental = None;
        if parser
            .dictionary(|key, item| match (key, item) {
                // RFC 8941 §4.2.2: a repeated key's last value wins.
                (b"u", Item::Integer(u)) => urgency = u8::try_from(u).ok().filter(|u| *u <= 7),
                (b"u", _) => urgency = None,
                (b"i", Item::Boolean(i)) => incremental = Some(i),
                (b"i", _) => incremental = None,
                _ => {}
            })
            .is_some()
        {
            if let Some(u) = urgency {
                p.urgency = u;
            }
            if let Some(i) = incremental {
                p.incremental = i;
            }
        }
        p
    }

    /// The parameters of a request's `priority` fields.
    pub fn of_request(headers: &http::HeaderMap) -> Priority {
        Priority::from_fields(headers.get_all(FIELD).iter().map(|v| v.as_bytes()))
    }

    /// The parameters of the `priority` fields of a request, joined as one list.
    pub fn from_fields<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Priority {
        let Some(first) = values.next() else {
            return Priority::default();
        };
        let Some(second) = values.next() else {
            return Priority::parse(first);
        };
        let mut joined = first.to_vec();
        for v in std::iter::once(second).chain(values) {
            joined.push(b',');
            joined.extend_from_slice(v);
        }
        Priority::parse(&joined)
    }
}

/// What a member's value is, as far as the parameters above care.
enum Item {
    Integer(i64),
    Boolean(bool),
    Other,
}

/// RFC 8941 §4.2, the parts a Dictionary needs. Every method returns `None` on a syntax error.
struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// §4.2.2: members separated by commas; each calls `member(key, value)`.
    fn dictionary(&mut self, mut member: impl FnMut(&[u8], Item)) -> Option<()> {
        self.skip_sp();
        if self.peek().is_none() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            let item = if self.eat(b'=') {
                if self.peek() == Some(b'(') {
                    self.inner_list()?;
                    Item::Other
                } else {
                    let item = self.bare_item()?;
                    self.parameters()?;
                    item
                }
            } else {
                self.parameters()?;
                Item::Boolean(true)
            };
            member(key, item);
            self.skip_ows();
            if self.peek().is_none() {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
            self.skip_ows();
            // A trailing comma is an error.
            self.peek()?;
        }
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        match self.peek()? {
            b'a'..=b'z' | b'*' => self.at += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.at += 1;
        }
        Some(&self.s[start..self.at])
    }

    /// §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// §4.2.1.2: `"(" *SP [ item *( 1*SP item ) *SP ] ")" parameters`.
    fn inner_list(&mut self) -> Option<()> {
        if !self.eat(b'(') {
            return None;
        }
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    /// §4.2.3.1: Integer or Decimal, String, Token, Byte Sequence or Boolean.
    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(|()| Item::Other),
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => {
                self.at += 1;
                while matches!(self.peek(), Some(c) if is_tchar(c) || c == b':' || c == b'/') {
                    self.at += 1;
                }
                Some(Item::Other)
            }
            b':' => {
                self.at += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
                {
                    self.at += 1;
                }
                self.eat(b':').then_some(Item::Other)
            }
            b'?' => {
                self.at += 1;
                let b = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.at += 1;
                Some(Item::Boolean(b))
            }
            _ => None,
        }
    }

    /// §4.2.4: at most 15 integer digits, or a Decimal of at most 12 integer and 3 fraction
    /// digits.
    fn number(&mut self) -> Option<Item> {
        let negative = self.eat(b'-');
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        let int_digits = self.at - start;
        if int_digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            let frac_start = self.at;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.at += 1;
            }
            let frac_digits = self.at - frac_start;
            if int_digits > 12 || !(1..=3).contains(&frac_digits) {
                return None;
            }
            return Some(Item::Other);
        }
        if int_digits > 15 {
            return None;
        }
        let digits = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        let n: i64 = digits.parse().ok()?;
        Some(Item::Integer(if negative { -n } else { n }))
    }

    /// §4.2.5: printable ASCII between quotes; `\` escapes only `"` and `\`.
    fn string(&mut self) -> Option<()> {
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'\\' => {
                    self.at += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.at += 1;
                }
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(u: u8, i: bool) -> Priority {
        Priority {
            urgency: u,
            incremental: i,
        }
    }

    #[test]
    fn the_parameters_and_their_defaults() {
        let table: &[(&str, Priority)] = &[
            ("", p(3, false)),
            ("u=0", p(0, false)),
            ("u=7", p(7, false)),
            ("i", p(3, true)),
            ("i=?1", p(3, true)),
            ("i=?0", p(3, false)),
            ("u=5, i", p(5, true)),
            ("i, u=1", p(1, true)),
            ("u=1,i", p(1, true)),
            ("  u=2 ,\ti", p(2, true)),
            // A repeated key: the last value wins.
            ("u=1, u=6", p(6, false)),
            ("u=1, u=9", p(3, false)),
            // Out of range or of the wrong type: that parameter is ignored.
            ("u=8, i", p(3, true)),
            ("u=-1", p(3, false)),
            ("u=1.5", p(3, false)),
            ("u=\"1\"", p(3, false)),
            ("u=?1", p(3, false)),
            ("u=(1 2)", p(3, false)),
            ("i=1", p(3, false)),
            ("i=\"yes\", u=4", p(4, false)),
            // Unknown members, parameters and every kind of bare item are skipped over.
            ("x=\"a,b\\\"c\", u=4", p(4, false)),
            ("u=4;foo=bar, i;x=?0", p(4, true)),
            ("a=(b \"c\" :aGk=: 1.25);q=1, u=0", p(0, false)),
            ("tok=foo/bar:baz, *star, u=6", p(6, false)),
            // Not a Dictionary: the whole value is ignored.
            ("u=1,", p(3, false)),
            ("u=1 i", p(3, false)),
            ("U=1", p(3, false)),
            ("u=1, i=?2", p(3, false)),
            ("u=1, x=\"open", p(3, false)),
            ("u=1, x=(1 2", p(3, false)),
            ("u=1, x=1234567890123456", p(3, false)),
            ("u=1, x=1.2345", p(3, false)),
            ("u=1, x=:a!:", p(3, false)),
            ("u=1, x=\"\\n\"", p(3, false)),
            ("u=1, é", p(3, false)),
        ];
        for (value, want) in table {
            assert_eq!(Priority::parse(value.as_bytes()), *want, "{value:?}");
        }
    }

    #[test]
    fn several_field_lines_are_one_list() {
        let lines: [&[u8]; 2] = [b"u=1", b"i"];
        assert_eq!(Priority::from_fields(lines.into_iter()), p(1, true));
        let lines: [&[u8]; 3] = [b"u=1", b"i", b"u=6"];
        assert_eq!(Priority::from_fields(lines.into_iter()), p(6, true));
        assert_eq!(Priority::from_fields(std::iter::empty()), p(3, false));
        let one: [&[u8]; 1] = [b"u=0"];
        assert_eq!(Priority::from_fields(one.into_iter()), p(0, false));
    }
}
