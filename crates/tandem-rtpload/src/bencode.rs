//! Bencode, the encoding of rtpengine's ng control protocol: integers `i42e`, byte strings
//! `4:spam`, lists `l...e` and dictionaries `d...e`. Dictionaries keep the order they were written
//! or received in (rtpengine does not sort its keys).

use thiserror::Error;

/// Deepest nesting the decoder accepts.
const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<n>e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(Vec<u8>),
    /// `l<values>e`
    List(Vec<Value>),
    /// `d<key value pairs>e`
    Dict(Vec<(Vec<u8>, Value)>),
}

/// Why bytes are not one bencoded value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("bencode input ends inside a value")]
    Truncated,
    /// A byte that starts no value, or a malformed integer or length.
    #[error("unexpected byte at offset {0}")]
    Unexpected(usize),
    /// Nesting deeper than the decoder accepts.
    #[error("bencode nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at offset {0} is not a byte string")]
    KeyNotBytes(usize),
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs, in the order given.
    pub fn dict<'k>(pairs: impl IntoIterator<Item = (&'k str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value of `key` in a dictionary (first match); `None` for other values.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The bytes of a byte string as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(pairs) => {
                out.push(b'd');
                for (k, v) in pairs {
                    put_bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value at the start of `input`; returns it and the bytes it took.
    pub fn decode(input: &[u8]) -> Result<(Value, usize), BencodeError> {
        let mut decoder = Decoder { input, at: 0 };
        let value = decoder.value(0)?;
        Ok((value, decoder.at))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

struct Decoder<'a> {
    input: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.at)
            .copied()
            .ok_or(BencodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut pairs = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotBytes(self.at));
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    pairs.push((key, value));
                }
                self.at += 1;
                Ok(Value::Dict(pairs))
            }
            _ => Err(BencodeError::Unexpected(self.at)),
        }
    }

    /// A decimal integer up to `end` (consumed).
    fn number(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.at;
        let stop = self.input[start..]
            .iter()
            .position(|&b| b == end)
            .ok_or(BencodeError::Truncated)?;
        let text = std::str::from_utf8(&self.input[start..start + stop])
            .map_err(|_| BencodeError::Unexpected(start))?;
        let n = text
            .parse::<i64>()
            .map_err(|_| BencodeError::Unexpected(start))?;
        self.at = start + stop + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, BencodeError> {
        let start = self.at;
        let len =
            usize::try_from(self.number(b':')?).map_err(|_| BencodeError::Unexpected(start))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(BencodeError::Truncated)?;
        let bytes = self.input[self.at..end].to_vec();
        self.at = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_keeps_key_order() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("c1")),
            ("n", Value::Int(-7)),
            ("flags", Value::List(vec![Value::str("a"), Value::Int(0)])),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer7:call-id2:c11:ni-7e5:flagsl1:ai0eee".to_vec()
        );
        let (back, used) = Value::decode(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(back, v);
        assert_eq!(back.get("call-id").unwrap().as_str(), Some("c1"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(Value::decode(b"d3:sdp"), Err(BencodeError::Truncated));
        assert_eq!(Value::decode(b"5:ab"), Err(BencodeError::Truncated));
        assert_eq!(Value::decode(b"x"), Err(BencodeError::Unexpected(0)));
        assert_eq!(
            Value::decode(b"di1ei2ee"),
            Err(BencodeError::KeyNotBytes(1))
        );
        assert_eq!(Value::decode(&[b'l'; 100]), Err(BencodeError::TooDeep));
        assert!(Value::decode(b"i12").is_err());
        assert!(Value::decode(b"99999999999999999999:").is_err());
    }
}
