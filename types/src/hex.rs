//! The one hex codec: node ids, host keys, allowlists and API tokens are
//! all written as lowercase hex (either case is read).

use std::fmt::Write;

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Exactly `2 * N` hex digits as `N` bytes; `None` for any other text.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Any even number of hex digits as bytes; `None` for any other text.
pub fn decode_vec(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_anything_else() {
        assert_eq!(encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(decode::<3>("00AB7f"), Some([0x00, 0xab, 0x7f]));
        for bad in ["00ab7", "00ab7f0", "00ab7g", "+0ab7f", "é0ab7", ""] {
            assert_eq!(decode::<3>(bad), None, "{bad:?}");
        }
        assert_eq!(decode_vec("00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(decode_vec(""), Some(vec![]));
        for bad in ["00ab7", "00ab7g", "é0"] {
            assert_eq!(decode_vec(bad), None, "{bad:?}");
        }
    }
}
