//! Segments written before transfers existed (magic `MXLEDG1`). Their
//! entries decode as today's, but for a snapshot: its totals had no
//! moved or escrowed credit, and it held no transfers. postcard has no
//! field names or defaults, so that shape is read here and converted.

use crate::entry::{AccountId, Entry, Reason};
use crate::market::{Account, Snapshot, Totals};
use crate::receipt::ReceiptBody;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The magic of a version-1 segment.
pub const MAGIC_V1: &[u8; 8] = b"MXLEDG1\n";

/// [`Entry::Snapshot`]'s variant index, as postcard writes it first.
const SNAPSHOT_VARIANT: u32 = 7;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct TotalsV1 {
    deposited_micro: u64,
    revenue_micro: u64,
    taxed_micro: u64,
    refunded_micro: u64,
    pauses: u64,
    resumes: u64,
    kills: BTreeMap<Reason, u64>,
}

#[derive(Deserialize)]
struct SnapshotV1 {
    next_account: AccountId,
    price_milli: u64,
    last_tick_ms: Option<u64>,
    accounts: Vec<Account>,
    totals: TotalsV1,
    unsigned: Vec<ReceiptBody>,
}

/// One version-1 frame's entry.
pub fn decode(payload: &[u8]) -> Result<Entry, postcard::Error> {
    match postcard::take_from_bytes::<u32>(payload) {
        Ok((SNAPSHOT_VARIANT, rest)) => {
            let s: SnapshotV1 = super::whole(rest)?;
            let t = s.totals;
            Ok(Entry::Snapshot(Box::new(Snapshot {
                next_account: s.next_account,
                price_milli: s.price_milli,
                last_tick_ms: s.last_tick_ms,
                accounts: s.accounts,
                totals: Totals {
                    deposited_micro: t.deposited_micro,
                    revenue_micro: t.revenue_micro,
                    taxed_micro: t.taxed_micro,
                    refunded_micro: t.refunded_micro,
                    moved_in_micro: 0,
                    moved_out_micro: 0,
                    escrow_micro: 0,
                    pauses: t.pauses,
                    resumes: t.resumes,
                    kills: t.kills,
                },
                unsigned: s.unsigned,
                outbound: Vec::new(),
                arrived: Vec::new(),
            })))
        }
        _ => super::whole(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Market;
    use crate::order::MarketConfig;
    use maxwell_types::NodeId;

    #[test]
    fn the_snapshot_variant_is_where_postcard_puts_it() {
        let m = Market::new(MarketConfig::default(), NodeId([1; 10]));
        let bytes = postcard::to_stdvec(&Entry::Snapshot(Box::new(m.snapshot()))).expect("encodes");
        assert_eq!(u32::from(bytes[0]), SNAPSHOT_VARIANT);
    }

    #[test]
    fn a_version_1_snapshot_reads_with_its_totals_and_no_transfers() {
        // A version-1 snapshot's bytes: the variant, then its fields in order.
        let mut kills = BTreeMap::new();
        kills.insert(Reason::Rent, 2);
        let old = (
            SNAPSHOT_VARIANT,
            9u64,
            1_250u64,
            Some(1_700_000_000_000u64),
            Vec::<Account>::new(),
            TotalsV1 {
                deposited_micro: 5_000_000,
                revenue_micro: 1_000_000,
                taxed_micro: 250_000,
                refunded_micro: 3_750_000,
                pauses: 3,
                resumes: 1,
                kills,
            },
            Vec::<ReceiptBody>::new(),
        );
        let bytes = postcard::to_stdvec(&old).expect("encodes");
        // Read as today's shape, the fields slide: it must not be.
        let today = postcard::from_bytes::<Entry>(&bytes);
        assert!(!matches!(&today, Ok(Entry::Snapshot(s)) if s.totals.pauses == 3));
        let Entry::Snapshot(s) = decode(&bytes).expect("decodes") else {
            panic!("not a snapshot")
        };
        assert_eq!((s.next_account, s.price_milli), (9, 1_250));
        assert_eq!(s.totals.deposited_micro, 5_000_000);
        assert_eq!((s.totals.pauses, s.totals.resumes), (3, 1));
        assert_eq!(s.totals.kills.get(&Reason::Rent), Some(&2));
        assert_eq!(s.totals.escrow_micro, 0);
        assert!(s.outbound.is_empty() && s.arrived.is_empty());
        let mut m = Market::new(MarketConfig::default(), NodeId([1; 10]));
        m.apply(&Entry::Snapshot(s), false);
        assert_eq!(
            m.check_books(),
            Ok(()),
            "a version-1 ledger's books still balance"
        );
    }
}
