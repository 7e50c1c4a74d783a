//! The durable ledger: an append-only log of [`Entry`]s in the data dir.
//!
//! Format: segment files `ledger/<seq>.log`, each an 8-byte magic and then
//! frames of `[len: u32 LE][crc32: u32 LE][postcard(Entry)]`. The magic
//! is the format's version: `MXLEDG2` now; `MXLEDG1` segments (before
//! transfers) still read, see [`legacy`]. Every segment
//! after the first starts with a [`Entry::Snapshot`], so a restart replays
//! only the newest segment; older ones are kept (up to `keep_segments`) for
//! receipts and audit, then deleted.
//!
//! Contracts:
//! - [`Ledger::append`] writes a whole frame or, on any error (a full disk
//!   among them), cuts the file back to where it was and returns the error:
//!   a failed append leaves no partial frame behind;
//! - [`Ledger::sync`] is `fdatasync`: an entry is acknowledged only after
//!   it (the driver syncs before answering any call that moved money, and
//!   once per tick);
//! - opening scans the newest segment: a torn or corrupt tail (a crash in
//!   mid-write: a bad frame with no whole frame anywhere after it) is cut
//!   at the last whole frame and reported once; a bad frame with a whole
//!   one after it, or damage in an older, closed segment, is an error,
//!   never silently dropped. A frame whose checksum holds but which does
//!   not decode (another version wrote it), or an unknown header, is an
//!   error too: a crash cannot write one, so cutting it would drop
//!   acknowledged entries;
//! - a new segment is written under a temporary name, synced and renamed,
//!   so a crash while rotating leaves the old segment in force.
//!
//! Why our own log and not an embedded store: a money log needs only
//! append, sync and replay, and a few hundred lines are easier to audit
//! (and to crash-test) than a B-tree's recovery.

use crate::entry::{AccountId, Entry};
use crate::receipt::Receipt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

const MAGIC: &[u8; 8] = b"MXLEDG2\n";

mod legacy;
/// The largest frame accepted (a snapshot of many guests is the biggest).
pub const MAX_FRAME: u32 = 256 << 20;

/// Ledger settings (`[market]` in the agent's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// A segment past this size is closed at the next rotation point.
    pub segment_bytes: u64,
    /// Closed segments kept beside the open one.
    pub keep_segments: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 16 << 20,
            keep_segments: 4,
        }
    }
}

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error(
        "the ledger's disk is full ({path}): money-moving calls are refused until space is freed"
    )]
    Full { path: PathBuf },
    #[error("ledger {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("ledger {path} is damaged at byte {offset}: {why} (not cut: restore it from a backup, or move the ledger aside to start with empty wallets)")]
    Damaged {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("ledger entry does not encode: {0}")]
    Encode(String),
}

/// A torn tail that was cut on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    pub path: PathBuf,
    pub at: u64,
    pub cut_bytes: u64,
    pub why: String,
}

/// The open ledger.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    config: LedgerConfig,
    seq: u64,
    file: File,
    len: u64,
    /// The open segment is version 1: the driver closes it before it
    /// writes, so that no entry a version-1 build cannot read goes under
    /// its header.
    legacy: bool,
}

fn io_err(path: &Path, source: io::Error) -> LedgerError {
    if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
        LedgerError::Full {
            path: path.to_owned(),
        }
    } else {
        LedgerError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What opening found.
#[derive(Debug)]
pub struct Opened {
    pub ledger: Ledger,
    /// The entries to replay, in order (the newest segment's).
    pub entries: Vec<Entry>,
    pub torn: Option<Torn>,
}

impl Ledger {
    /// Opens (or creates) the ledger under `dir`.
    pub fn open(dir: &Path, config: LedgerConfig) -> Result<Opened, LedgerError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        // A temporary segment is a rotation that did not finish.
        for (_, p) in list(dir, "tmp")? {
            let _ = fs::remove_file(p);
        }
        let segments = list(dir, "log")?;
        let Some((seq, path)) = segments.last().cloned() else {
            let ledger = Self::create(dir, config, 1, None)?;
            return Ok(Opened {
                ledger,
                entries: Vec::new(),
                torn: None,
            });
        };
        let (entries, good, total, stop) = scan(&path)?;
        let why = match stop {
            Some(Stop::Damaged(why)) => {
                return Err(LedgerError::Damaged {
                    path,
                    offset: good,
                    why,
                })
            }
            Some(Stop::Torn(why)) => Some(why),
            None => None,
        };
        if seq > 1 && !matches!(entries.first(), Some(Entry::Snapshot(_))) {
            // A later segment is born with its snapshot (synced, then
            // renamed): without one, replaying it would lose every wallet.
            return Err(LedgerError::Damaged {
                path,
                offset: MAGIC.len() as u64,
                why: why.unwrap_or_else(|| "it does not start with a snapshot".into()),
            });
        }
        let mut torn = None;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        if good < total || good < MAGIC.len() as u64 {
            if good < MAGIC.len() as u64 {
                file.set_len(0).map_err(|e| io_err(&path, e))?;
                file.write_all(MAGIC).map_err(|e| io_err(&path, e))?;
            } else {
                file.set_len(good).map_err(|e| io_err(&path, e))?;
            }
            file.sync_data().map_err(|e| io_err(&path, e))?;
            torn = Some(Torn {
                path: path.clone(),
                at: good,
                cut_bytes: total - good,
                why: why.unwrap_or_default(),
            });
        }
        let len = good.max(MAGIC.len() as u64);
        let mut head = [0u8; 8];
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_exact(&mut head))
            .and_then(|()| file.seek(SeekFrom::Start(len)))
            .map_err(|e| io_err(&path, e))?;
        let legacy = &head == legacy::MAGIC_V1;
        Ok(Opened {
            ledger: Ledger {
                dir: dir.to_owned(),
                config,
                seq,
                file,
                len,
                legacy,
            },
            entries,
            torn,
        })
    }

    fn create(
        dir: &Path,
        config: LedgerConfig,
        seq: u64,
        first: Option<&Entry>,
    ) -> Result<Self, LedgerError> {
        let tmp = dir.join(format!("{seq:08}.tmp"));
        let path = dir.join(format!("{seq:08}.log"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        let mut bytes = MAGIC.to_vec();
        if let Some(e) = first {
            bytes.extend(frame(e)?);
        }
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp, e));
        }
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
        Ok(Ledger {
            dir: dir.to_owned(),
            config,
            seq,
            file,
            len: bytes.len() as u64,
            legacy: false,
        })
    }

    /// Appends one entry (not yet synced). On error nothing of it remains.
    pub fn append(&mut self, entry: &Entry) -> Result<(), LedgerError> {
        let bytes = frame(entry)?;
        let path = self.path();
        if let Err(e) = self.file.write_all(&bytes) {
            // Cut back any partial frame, so the next append starts clean.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(io_err(&path, e));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        let path = self.path();
        self.file.sync_data().map_err(|e| io_err(&path, e))
    }

    /// Whether the open segment is due to be closed: it is full, or of
    /// version 1.
    pub fn wants_rotation(&self) -> bool {
        self.legacy || self.len >= self.config.segment_bytes
    }

    /// Closes the open segment and starts a new one from `snapshot`,
    /// deleting closed segments beyond `keep_segments`.
    pub fn rotate(&mut self, snapshot: &Entry) -> Result<(), LedgerError> {
        self.sync()?;
        self.start_from(snapshot)
    }

    /// Starts a new segment from `snapshot` without syncing the open one:
    /// for a segment whose sync failed, which no later sync can vouch for
    /// (the snapshot holds all it held).
    pub fn start_from(&mut self, snapshot: &Entry) -> Result<(), LedgerError> {
        let next = Self::create(&self.dir, self.config, self.seq + 1, Some(snapshot))?;
        *self = next;
        let segments = list(&self.dir, "log")?;
        let closed = segments.len().saturating_sub(1);
        for (_, p) in segments
            .iter()
            .take(closed.saturating_sub(self.config.keep_segments))
        {
            let _ = fs::remove_file(p);
        }
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("{:08}.log", self.seq))
    }

    /// Bytes in the open segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Every retained receipt of `account`, oldest first.
    pub fn receipts(&self, account: AccountId) -> Result<Vec<Receipt>, LedgerError> {
        receipts_in(&self.dir, account)
    }
}

/// Every retained receipt of `account` in the ledger under `dir`, oldest
/// first. Safe beside a writer: a frame being written ends the scan of
/// that segment.
pub fn receipts_in(dir: &Path, account: AccountId) -> Result<Vec<Receipt>, LedgerError> {
    let mut out: Vec<Receipt> = Vec::new();
    for (_, p) in list(dir, "log")? {
        let (entries, ..) = scan(&p)?;
        for e in entries {
            if let Entry::Receipt(r) = e {
                if r.body.account == account && out.last().is_none_or(|l| l.body.seq < r.body.seq) {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

fn list(dir: &Path, ext: &str) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let p = e.map_err(|e| io_err(dir, e))?.path();
        if p.extension().and_then(|x| x.to_str()) != Some(ext) {
            continue;
        }
        if let Some(seq) = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, p));
        }
    }
    out.sort();
    Ok(out)
}

fn frame(entry: &Entry) -> Result<Vec<u8>, LedgerError> {
    let payload = postcard::to_stdvec(entry).map_err(|e| LedgerError::Encode(e.to_string()))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME);
    let len = len.ok_or_else(|| {
        LedgerError::Encode(format!("{} bytes is too large a frame", payload.len()))
    })?;
    Ok(framed(len, &payload))
}

/// `payload` as a frame: its length (checked by the caller), its CRC-32, itself.
fn framed(len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend(len.to_le_bytes());
    out.extend(crc32(payload).to_le_bytes());
    out.extend(payload);
    out
}

/// Reads a segment: its whole frames, the offset after the last, the
/// file's length, and what stopped the scan early.
fn scan(path: &Path) -> Result<(Vec<Entry>, u64, u64, Option<Stop>), LedgerError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_err(path, e))?;
    let (entries, good, why) = scan_bytes(&bytes);
    Ok((entries, good, bytes.len() as u64, why))
}

/// Why a segment's scan stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// What a crash in mid-write leaves: cut on open.
    Torn(String),
    /// What no crash can leave: never cut.
    Damaged(String),
}

/// Decodes a segment's bytes: its whole frames, the offset after the last
/// one, and what stopped the scan before the end (never a panic: any bytes
/// at all are a prefix of frames and a reason).
pub fn scan_bytes(bytes: &[u8]) -> (Vec<Entry>, u64, Option<Stop>) {
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    let v1 = match head {
        h if h == MAGIC => false,
        h if h == legacy::MAGIC_V1 => true,
        // A segment is born whole (written aside, synced, renamed): only a
        // first segment cut while it was created can lack its header.
        h if MAGIC.starts_with(h) => {
            return (Vec::new(), 0, Some(Stop::Torn("no ledger header".into())))
        }
        _ => {
            return (
                Vec::new(),
                0,
                Some(Stop::Damaged("an unknown ledger header".into())),
            )
        }
    };
    let mut at = MAGIC.len();
    let mut entries = Vec::new();
    let decode = |payload: &[u8]| match v1 {
        true => legacy::decode(payload),
        false => whole::<Entry>(payload),
    };
    // A crash tears only what it was writing, the end: a bad frame with a
    // whole one anywhere after it is damage, and cutting there would drop
    // acknowledged entries.
    let torn = |at: usize, why: String| match whole_frame_after(bytes, at + 1, &decode) {
        None => Some(Stop::Torn(why)),
        Some(next) => Some(Stop::Damaged(format!(
            "{why}, with a whole entry at offset {next} after it (damage, not a torn tail)"
        ))),
    };
    let why = loop {
        if at == bytes.len() {
            break None;
        }
        let Some(head) = bytes.get(at..at + 8) else {
            break torn(at, "a partial frame header".to_string());
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        // No entry encodes to nothing: zeros to the end are a zero-filled
        // tail (a crash can leave one), even though their checksum holds;
        // zeros with data after them are damage.
        if len == 0 && bytes[at..].iter().any(|b| *b != 0) {
            break Some(Stop::Damaged("a hole of zeros before more data".into()));
        }
        if len == 0 || len > MAX_FRAME {
            break torn(at, format!("a frame length of {len}"));
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else {
            break torn(at, format!("a frame of {len} bytes cut short"));
        };
        if crc32(payload) != crc {
            break torn(at, "a checksum mismatch".into());
        }
        match decode(payload) {
            Ok(e) => entries.push(e),
            Err(e) => {
                break Some(Stop::Damaged(format!(
                "a whole entry that does not decode ({e}): written by another version of maxwell?"
            )))
            }
        }
        at += 8 + len as usize;
    };
    (entries, at as u64, why)
}

/// The first offset at or after `from` where a whole frame starts: its
/// length fits, its checksum holds and it decodes. Only a scan that stopped
/// early asks, so the cost (a checksum per offset whose length fits) is
/// paid on a damaged segment alone.
fn whole_frame_after<E>(
    bytes: &[u8],
    from: usize,
    decode: &impl Fn(&[u8]) -> Result<Entry, E>,
) -> Option<usize> {
    (from..bytes.len().saturating_sub(7)).find(|&o| {
        let h = &bytes[o..o + 8];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len == 0 || len > MAX_FRAME {
            return false;
        }
        bytes
            .get(o + 8..o + 8 + len as usize)
            .is_some_and(|p| crc32(p) == crc && decode(p).is_ok())
    })
}

/// `payload` decoded, with nothing left over: bytes past the end would be
/// fields of a newer version, silently dropped.
fn whole<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes::<T>(payload)? {
        (t, []) => Ok(t),
        _ => Err(postcard::Error::SerdeDeCustom),
    }
}

/// The bytes a segment starts with.
pub const SEGMENT_MAGIC: &[u8; 8] = MAGIC;

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, as zlib).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    fn open_entry(i: u64) -> Entry {
        let order =
            crate::order::Order::new("g", 1, 64, 1_000, i, crate::order::Class::Pausable, None);
        Entry::Open {
            account: i,
            vm: i,
            order: order.expect("order"),
            at_ms: i,
        }
    }

    fn whole_frame(payload: &[u8]) -> Vec<u8> {
        framed(payload.len() as u32, payload)
    }

    #[test]
    fn what_no_crash_can_write_is_an_error_and_is_never_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000001.log");
        let mut good = MAGIC.to_vec();
        good.extend(frame(&open_entry(1)).expect("frame"));
        // A whole frame (its checksum holds) of a variant this build lacks.
        let mut newer = good.clone();
        newer.extend(whole_frame(&[200, 1, 2, 3]));
        newer.extend(frame(&open_entry(2)).expect("frame"));
        let mut alien = b"MXLEDG9\n".to_vec();
        alien.extend(&good[8..]);
        // A whole entry with bytes after it: fields a newer version added.
        let mut longer = postcard::to_stdvec(&open_entry(2)).expect("encodes");
        longer.push(0);
        let mut grown = good.clone();
        grown.extend(whole_frame(&longer));
        // Zeros, then a whole frame: a hole, not a tail.
        let mut holed = good.clone();
        holed.extend([0u8; 64]);
        holed.extend(frame(&open_entry(2)).expect("frame"));
        for bytes in [newer, alien, grown, holed] {
            fs::write(&path, &bytes).expect("write");
            let err = Ledger::open(dir.path(), LedgerConfig::default()).expect_err("damaged");
            assert!(matches!(err, LedgerError::Damaged { .. }), "{err}");
            assert_eq!(fs::read(&path).expect("read"), bytes, "nothing was cut");
        }
    }

    #[test]
    fn a_bad_frame_with_a_whole_one_after_it_is_damage_and_is_never_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000001.log");
        let mut bytes = MAGIC.to_vec();
        let mut starts = Vec::new();
        for i in 1..=3 {
            starts.push(bytes.len());
            bytes.extend(frame(&open_entry(i)).expect("frame"));
        }
        // The second frame's payload, its checksum, its length made huge,
        // and its length made a little longer: each with frame 3 after it.
        for flip in [starts[1] + 9, starts[1] + 5, starts[1] + 3, starts[1]] {
            let mut bad = bytes.clone();
            bad[flip] ^= if flip == starts[1] { 0x04 } else { 0xff };
            fs::write(&path, &bad).expect("write");
            let err = Ledger::open(dir.path(), LedgerConfig::default()).expect_err("damaged");
            assert!(
                matches!(&err, LedgerError::Damaged { why, .. } if why.contains("not a torn tail")),
                "byte {flip}: {err}"
            );
            assert_eq!(fs::read(&path).expect("read"), bad, "nothing was cut");
        }
        // The same damage in the last frame is a torn tail: cut there.
        let mut last = bytes.clone();
        last[starts[2] + 9] ^= 0xff;
        fs::write(&path, &last).expect("write");
        let opened = Ledger::open(dir.path(), LedgerConfig::default()).expect("open");
        assert_eq!(opened.entries, vec![open_entry(1), open_entry(2)]);
        assert_eq!(opened.torn.map(|t| t.at), Some(starts[2] as u64));
    }

    #[test]
    fn a_zero_filled_tail_is_torn_and_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000001.log");
        let mut bytes = MAGIC.to_vec();
        bytes.extend(frame(&open_entry(1)).expect("frame"));
        let end = bytes.len() as u64;
        // Eight zeros read as a frame of length 0 whose CRC-32 holds.
        bytes.extend([0u8; 4096]);
        fs::write(&path, &bytes).expect("write");
        let opened = Ledger::open(dir.path(), LedgerConfig::default()).expect("open");
        assert_eq!(opened.entries, vec![open_entry(1)]);
        assert_eq!(opened.torn.map(|t| t.at), Some(end));
    }

    #[test]
    fn a_version_1_segment_replays_and_takes_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000001.log");
        let mut v1 = legacy::MAGIC_V1.to_vec();
        v1.extend(frame(&open_entry(1)).expect("frame"));
        fs::write(&path, &v1).expect("write");
        let opened = Ledger::open(dir.path(), LedgerConfig::default()).expect("open");
        assert_eq!(opened.entries, vec![open_entry(1)]);
        assert!(opened.torn.is_none());
        let mut ledger = opened.ledger;
        ledger.append(&open_entry(2)).expect("append");
        ledger.sync().expect("sync");
        drop(ledger);
        let again = Ledger::open(dir.path(), LedgerConfig::default()).expect("open");
        assert_eq!(again.entries, vec![open_entry(1), open_entry(2)]);
        assert_eq!(&fs::read(&path).expect("read")[..8], legacy::MAGIC_V1);
        // It is closed at the first chance; the next segment is version 2.
        let mut ledger = again.ledger;
        assert!(ledger.wants_rotation());
        let m = crate::market::Market::new(Default::default(), maxwell_types::NodeId([1; 10]));
        ledger
            .rotate(&Entry::Snapshot(Box::new(m.snapshot())))
            .expect("rotate");
        assert!(!ledger.wants_rotation());
        let next = fs::read(dir.path().join("00000002.log")).expect("read");
        assert_eq!(&next[..8], MAGIC);
    }
}
