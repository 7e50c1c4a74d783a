use super::*;
use crate::node_id::KeyedNodeId;
use crate::report::tests::sample;
use crate::report::SensorSource;
use crate::report::{MAX_NAME_LEN, MAX_RACK_LEN};
use crate::units::{MicroWatts, MilliCelsius};
use maxwell_types::Position;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(key: &SigningKey) -> NodeId {
    NodeId::from_verifying_key(&key.verifying_key())
}

#[test]
fn report_round_trips_through_text() {
    let k = key(1);
    let report = sample(id(&k));
    let signed = SignedRecord::sign(&report, &k).expect("signable");
    let text = signed.encode();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let decoded = SignedRecord::decode(&text).expect("decodes");
    assert_eq!(decoded, signed);
    assert_eq!(decoded.kind(), RecordKind::Report);
    assert_eq!(decoded.public_key(), k.verifying_key().as_bytes());
    assert_eq!(decoded.key_node_id(), id(&k));
    assert_eq!(decoded.open(), Ok(Record::Report(report)));
}

#[test]
fn one_kind_opens_as_itself_and_as_no_other() {
    let k = key(3);
    let report = sample(id(&k));
    let signed = SignedRecord::sign(&report, &k).expect("signable");
    assert_eq!(signed.open_as::<HeatReport>(), Ok(report));
    assert_eq!(
        signed.open_as::<Leave>(),
        Err(DecodeError::WrongKind {
            wanted: "leave",
            found: "report"
        })
    );
    let bytes: Vec<u8> = RecordKind::ALL.iter().map(|k| k.byte()).collect();
    assert_eq!(
        bytes,
        [0x01, 0x02, 0x03],
        "the kind bytes are the wire format"
    );
}

#[test]
fn leave_round_trips_through_text() {
    let k = key(2);
    let leave = Leave {
        node_id: id(&k),
        generation: 1_764_201_600_000,
        seq: 43,
        timestamp_ms: 1_764_201_650_000,
    };
    let signed = SignedRecord::sign(&leave, &k).expect("signable");
    let decoded = SignedRecord::decode(&signed.encode()).expect("decodes");
    assert_eq!(decoded.kind(), RecordKind::Leave);
    assert_eq!(decoded.open(), Ok(Record::Leave(leave)));
}

#[test]
fn typical_and_largest_sizes() {
    let k = key(3);
    let typical = SignedRecord::sign(&sample(id(&k)), &k).expect("signable");
    // Measured: 64-byte body + 97-byte header = 161 bytes = 215 characters.
    assert_eq!(typical.body().len(), 64);
    assert_eq!(typical.to_bytes().len(), 161);
    assert_eq!(typical.encode().len(), 215);

    let largest = HeatReport {
        node_id: id(&k),
        name: "n".repeat(MAX_NAME_LEN),
        generation: u64::MAX,
        seq: u64::MAX,
        timestamp_ms: u64::MAX,
        position: Position::new("r".repeat(MAX_RACK_LEN), u16::MAX),
        hottest: MilliCelsius(i64::MIN),
        critical: MilliCelsius(i64::MIN),
        power_draw: MicroWatts(i64::MIN),
        power_cap: MicroWatts(i64::MIN),
        headroom: MicroWatts(i64::MIN),
        price_milli: u64::MAX,
        source: SensorSource::Emulated,
        room: crate::Room {
            guests: u32::MAX,
            free_vcpus: u32::MAX,
            free_memory_mib: u32::MAX,
        },
        api: Some(std::net::SocketAddr::new(
            std::net::Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )
            .into(),
            u16::MAX,
        )),
        p2p: Some(std::net::SocketAddr::new(
            std::net::Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )
            .into(),
            u16::MAX,
        )),
    };
    let signed = SignedRecord::sign(&largest, &k).expect("signable");
    assert_eq!(signed.body().len(), 292);
    assert_eq!(signed.encode().len(), 519);
    assert!(signed.encode().len() <= MAX_ENCODED_LEN);
    assert_eq!(
        SignedRecord::decode(&signed.encode()).and_then(|s| s.open()),
        Ok(Record::Report(largest))
    );
}

#[test]
fn signing_refuses_bad_records() {
    let k = key(4);
    let mut report = sample(id(&k));
    report.position.rack = "r".repeat(MAX_RACK_LEN + 1);
    assert_eq!(
        SignedRecord::sign(&report, &k),
        Err(RecordError::RackTooLong {
            len: MAX_RACK_LEN + 1
        })
    );
    let other = sample(id(&key(5)));
    assert_eq!(
        SignedRecord::sign(&other, &k),
        Err(RecordError::NodeIdMismatch {
            record: id(&key(5)),
            key: id(&k),
        })
    );
}

#[test]
fn decode_refuses_bad_layouts() {
    let long = "A".repeat(MAX_ENCODED_LEN + 1);
    assert_eq!(
        SignedRecord::decode(&long),
        Err(DecodeError::Oversized {
            len: MAX_ENCODED_LEN + 1
        })
    );
    assert_eq!(
        SignedRecord::decode("a+b/"),
        Err(DecodeError::NotBase64 { at: 1 })
    );
    assert_eq!(
        SignedRecord::decode(""),
        Err(DecodeError::TooShort { len: 0 })
    );
    // A header with no body.
    let header_only = b64::encode(&[1u8; HEADER_LEN]);
    assert_eq!(
        SignedRecord::decode(&header_only),
        Err(DecodeError::TooShort { len: HEADER_LEN })
    );
    let mut bytes = vec![0x04u8; HEADER_LEN + 1];
    assert_eq!(
        SignedRecord::from_bytes(&bytes),
        Err(DecodeError::UnknownKind(4))
    );
    bytes[0] = 0x01;
    assert!(SignedRecord::from_bytes(&bytes).is_ok());
}

#[test]
fn forged_signature_is_refused() {
    let (k, forger) = (key(6), key(7));
    let report = sample(id(&k));
    let genuine = SignedRecord::sign(&report, &k).expect("signable");
    // The forger signs the victim's report with its own key but sends the
    // victim's public key.
    let mut forged = SignedRecord::sign(&sample(id(&forger)), &forger).expect("signable");
    forged.body = genuine.body.clone();
    forged.public_key = genuine.public_key;
    forged.signature = sign_raw(RecordKind::Report, genuine.body.clone(), &forger).signature;
    assert_eq!(forged.open(), Err(DecodeError::BadSignature));
    // A zero signature.
    let mut zero = genuine.clone();
    zero.signature = [0; 64];
    assert_eq!(zero.open(), Err(DecodeError::BadSignature));
}

#[test]
fn tampered_body_is_refused() {
    let k = key(8);
    let mut report = sample(id(&k));
    let signed = SignedRecord::sign(&report, &k).expect("signable");
    // Rewrite the body as a cooler report, keeping key and signature.
    report.hottest = MilliCelsius(30_000);
    let mut tampered = signed.clone();
    tampered.body = to_body(&report).expect("encodable");
    assert_eq!(tampered.open(), Err(DecodeError::BadSignature));
}

#[test]
fn kind_is_covered_by_the_signature() {
    let k = key(9);
    let leave = Leave {
        node_id: id(&k),
        generation: 1,
        seq: 2,
        timestamp_ms: 3,
    };
    let mut signed = SignedRecord::sign(&leave, &k).expect("signable");
    signed.kind = RecordKind::Report;
    assert_eq!(signed.open(), Err(DecodeError::BadSignature));
}

#[test]
fn body_checks_after_a_valid_signature() {
    let k = key(10);
    let report = sample(id(&k));
    let v2 = postcard::to_allocvec(&(crate::RECORD_VERSION + 1, &report)).expect("encodable");
    assert_eq!(
        sign_raw(RecordKind::Report, v2, &k).open(),
        Err(DecodeError::UnsupportedVersion(crate::RECORD_VERSION + 1))
    );
    let mut trailing = to_body(&report).expect("encodable");
    trailing.push(0);
    assert_eq!(
        sign_raw(RecordKind::Report, trailing, &k).open(),
        Err(DecodeError::TrailingBytes(1))
    );
    let truncated = to_body(&report).expect("encodable")[..20].to_vec();
    assert_eq!(
        sign_raw(RecordKind::Report, truncated, &k).open(),
        Err(DecodeError::Body(postcard::Error::DeserializeUnexpectedEnd))
    );
    // A report body sent as a leave: the leave decodes from the report's
    // first fields and leaves the rest over.
    let as_leave = sign_raw(RecordKind::Leave, to_body(&report).expect("encodable"), &k);
    assert!(matches!(
        as_leave.open(),
        Err(DecodeError::TrailingBytes(_))
    ));
    // Signed by its key, but naming another node.
    let other = sample(id(&key(11)));
    assert_eq!(
        sign_raw(RecordKind::Report, to_body(&other).expect("encodable"), &k).open(),
        Err(DecodeError::Record(RecordError::NodeIdMismatch {
            record: id(&key(11)),
            key: id(&k),
        }))
    );
    // A rack over the bound, signed.
    let mut long = report.clone();
    long.position.rack = "r".repeat(MAX_RACK_LEN + 1);
    assert_eq!(
        sign_raw(RecordKind::Report, to_body(&long).expect("encodable"), &k).open(),
        Err(DecodeError::Record(RecordError::RackTooLong {
            len: MAX_RACK_LEN + 1
        }))
    );
}

#[test]
fn invalid_key_point_is_refused() {
    let k = key(12);
    let mut signed = SignedRecord::sign(&sample(id(&k)), &k).expect("signable");
    signed.public_key = [0; 32];
    signed.public_key[0] = 2; // y = 2 is on no edwards25519 point
    assert_eq!(signed.open(), Err(DecodeError::BadKey));
}

/// Property: flipping any single bit of the envelope, truncating it, or
/// extending it yields a value that is refused (the body and kind are signed,
/// the key is bound to the signature, and signatures are checked strictly).
/// Exhaustive over every bit of a typical report.
#[test]
fn every_mutation_of_an_envelope_is_refused() {
    let k = key(13);
    let signed = SignedRecord::sign(&sample(id(&k)), &k).expect("signable");
    let bytes = signed.to_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.clone();
            m[i] ^= 1 << bit;
            let opened = SignedRecord::from_bytes(&m).and_then(|s| s.open());
            assert!(
                opened.is_err(),
                "bit {bit} of byte {i} flipped was accepted"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(SignedRecord::from_bytes(&bytes[..len])
            .and_then(|s| s.open())
            .is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        SignedRecord::from_bytes(&longer).and_then(|s| s.open()),
        Err(DecodeError::BadSignature)
    );
}

/// Property: every single-character substitution of the text form is refused
/// or (never, in practice) decodes to the identical record: base64url is
/// decoded strictly, so each text names one byte string. Sampled with a
/// fixed-seed generator to keep the debug-build run short.
#[test]
fn text_mutations_are_refused() {
    let k = key(14);
    let report = sample(id(&k));
    let text = SignedRecord::sign(&report, &k).expect("signable").encode();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ ";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    for _ in 0..400 {
        let mut m = text.clone().into_bytes();
        let pos = (next() % m.len() as u64) as usize;
        let with = alphabet[(next() % alphabet.len() as u64) as usize];
        if m[pos] == with {
            continue;
        }
        m[pos] = with;
        let Ok(m) = String::from_utf8(m) else {
            continue;
        };
        match SignedRecord::decode(&m).and_then(|s| s.open()) {
            Err(_) => refused += 1,
            Ok(record) => assert_eq!(record, Record::Report(report.clone())),
        }
    }
    assert!(refused > 350, "only {refused} mutations were tried");
}
