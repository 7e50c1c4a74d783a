//! Strict base64url without padding (RFC 4648 §5), the text form of a signed
//! record. Strict means canonical: every string decodes to at most one byte
//! string and every byte string has exactly one encoding, because unused low
//! bits of the last character must be zero and a length of `4k + 1` is
//! refused. Twenty lines are cheaper than another dependency.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Where a string stops being canonical base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// Byte offset of the first offending character (the length for a bad length).
    pub(crate) at: usize,
}

/// Encodes `bytes`; the result has `ceil(4 * len / 3)` characters.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// Number of characters [`encode`] produces for `len` bytes.
pub(crate) const fn encoded_len(len: usize) -> usize {
    (len * 4).div_ceil(3)
}

fn value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes canonical base64url without padding.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, Invalid> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return Err(Invalid { at: text.len() });
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for (index, chunk) in text.chunks(4).enumerate() {
        let start = index * 4;
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or(Invalid { at: start + i })?;
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let full = chunk.len() - 1; // 2, 3 or 4 chars carry 1, 2 or 3 bytes
        if bytes[full..].iter().any(|&b| b != 0) {
            // Leftover bits of the last character are not zero: not canonical.
            return Err(Invalid {
                at: start + chunk.len() - 1,
            });
        }
        out.extend_from_slice(&bytes[..full]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        // RFC 4648 §10 test vectors, padding removed.
        let cases = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded), Ok(plain.as_bytes().to_vec()));
            assert_eq!(encoded_len(plain.len()), coded.len());
        }
        // The url-safe characters.
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8"), Ok(vec![0xfb, 0xff]));
    }

    #[test]
    fn round_trips_every_length_and_byte() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        for len in 0..bytes.len() {
            let coded = encode(&bytes[..len]);
            assert_eq!(coded.len(), encoded_len(len));
            assert_eq!(decode(&coded), Ok(bytes[..len].to_vec()));
        }
    }

    #[test]
    fn rejects_non_canonical_input() {
        assert_eq!(decode("Z"), Err(Invalid { at: 1 }));
        assert_eq!(decode("Zm9vY"), Err(Invalid { at: 5 }));
        assert_eq!(decode("Zh"), Err(Invalid { at: 1 })); // 'h' leaves bits set
        assert_eq!(decode("Zm9="), Err(Invalid { at: 3 })); // no padding
        assert_eq!(decode("Zm+v"), Err(Invalid { at: 2 })); // standard alphabet
        assert_eq!(decode("Zm9v\n"), Err(Invalid { at: 5 }));
        assert_eq!(decode("Zm 9"), Err(Invalid { at: 2 }));
        assert_eq!(decode("Zmé"), Err(Invalid { at: 2 }));
    }
}
