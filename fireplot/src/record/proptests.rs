//! Property tests of the event-line decoder (the `fuzz` of `cargo xtask
//! test`; `cargo xtask fuzz` runs them with many more cases and a fresh
//! seed). Inputs: structured lines whose fields take valid, wrong-typed or
//! missing values, valid lines with bytes flipped, cut or inserted, and
//! arbitrary bytes. Properties: the reader never panics or fails on
//! in-memory input; every non-blank line is counted as read or bad; and
//! whatever it accepts, the writer writes back into a line it reads the
//! same (a fixed point after one round).

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{read_lines, Record};

const FIELDS: [&str; 19] = [
    "ts",
    "family",
    "proto",
    "src",
    "sport",
    "dst",
    "dport",
    "flags",
    "ttl",
    "len",
    "class",
    "ifindex",
    "ip_id",
    "tcp_seq",
    "tcp_window",
    "icmp_type",
    "icmp_code",
    "icmp_id",
    "dark",
];

fn valid_value(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "ts" => prop_oneof![
            Just(json!("2026-11-23T17:00:51.123456789Z")),
            Just(json!("2026-11-23T18:00:51+01:00")),
            Just(json!("1970-01-01T00:00:00Z")),
            Just(json!("2262-04-11T23:47:16.854775807Z")),
            Just(json!("2262-04-11T23:47:16.854775808Z")),
        ]
        .boxed(),
        "family" => prop_oneof![Just(json!(4)), Just(json!(6)), Just(json!(0))].boxed(),
        "proto" => prop_oneof![
            Just(json!("tcp")),
            Just(json!("udp")),
            Just(json!("icmp")),
            Just(json!("icmpv6")),
            any::<u8>().prop_map(|n| json!(n)),
            any::<u8>().prop_map(|n| json!(n.to_string())),
        ]
        .boxed(),
        "src" | "dst" => prop_oneof![
            Just(json!("198.18.0.2")),
            Just(json!("2001:db8::2")),
            Just(Value::Null),
        ]
        .boxed(),
        "flags" => prop_oneof![
            Just(json!("SYN")),
            Just(json!("FIN|PSH|URG")),
            Just(json!("")),
            Just(json!("SYN|ACK|ECE|CWR")),
        ]
        .boxed(),
        "class" => prop_oneof![Just(json!("unsolicited")), Just(json!("malformed"))].boxed(),
        "dark" => prop_oneof![Just(json!("addr")), Just(json!("port")), Just(Value::Null)].boxed(),
        _ => prop_oneof![any::<u16>().prop_map(|n| json!(n)), Just(Value::Null)].boxed(),
    }
}

fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        Just(json!([1, 2])),
        Just(json!({"a": 1})),
    ]
}

/// An event object whose fields are each valid, wrong or missing.
fn structured_line() -> impl Strategy<Value = String> {
    let fields: Vec<_> = FIELDS
        .iter()
        .map(|&f| {
            prop_oneof![
                6 => valid_value(f).prop_map(Some),
                1 => wrong_value().prop_map(Some),
                1 => Just(None),
            ]
            .prop_map(move |v| (f, v))
        })
        .collect();
    fields.prop_map(|fs| {
        let mut m = Map::new();
        for (k, v) in fs {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        }
        Value::Object(m).to_string()
    })
}

const VALID: &str = r#"{"ts":"2026-11-23T17:00:51.123456789Z","family":6,"proto":"udp","src":"2001:db8::2","sport":53,"dst":"2001:db8:1::2","dport":5353,"flags":"","ttl":63,"len":90,"class":"unsolicited","ifindex":2,"ip_id":0,"tcp_seq":0,"tcp_window":0}"#;

/// A valid line with bytes flipped, cut out or inserted.
fn mutated_line() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6).prop_map(|ops| {
        let mut b = VALID.as_bytes().to_vec();
        for (op, at, byte) in ops {
            if b.is_empty() {
                break;
            }
            let at = at % b.len();
            match op % 3 {
                0 => b[at] ^= byte | 1,
                1 => {
                    b.remove(at);
                }
                _ => b.insert(at, byte),
            }
        }
        b
    })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        3 => structured_line().prop_map(String::into_bytes),
        3 => mutated_line(),
        1 => proptest::collection::vec(any::<u8>(), 0..80),
    ];
    proptest::collection::vec(line, 1..8).prop_map(|lines| {
        let mut out = Vec::new();
        for l in lines {
            // A line ends at its first newline, as in a file.
            out.extend(l.into_iter().filter(|&c| c != b'\n'));
            out.push(b'\n');
        }
        out
    })
}

fn read_all(input: &[u8]) -> (Vec<Record>, u64, u64) {
    let mut recs = Vec::new();
    let r =
        read_lines(input, |r, _| recs.push(r), |_| {}).expect("in-memory input has no I/O error");
    (recs, r.ok, r.bad)
}

fn write_all(recs: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs {
        out.extend_from_slice(r.to_json_record().to_json().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Fixed seed under `cargo xtask test` (repeatable); `cargo xtask fuzz`
/// sets `PROPTEST_RNG_SEED` and `PROPTEST_CASES`.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
    );
    c.rng_seed = proptest::test_runner::RngSeed::Fixed(
        std::env::var("PROPTEST_RNG_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5eed),
    );
    c.failure_persistence = None;
    c
}

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn every_line_is_read_or_counted_and_what_is_read_round_trips(input in input()) {
        let lines = input
            .split(|&c| c == b'\n')
            .filter(|l| !std::str::from_utf8(l).is_ok_and(|s| s.trim().is_empty()))
            .count() as u64;
        let (recs, ok, bad) = read_all(&input);
        prop_assert_eq!(ok + bad, lines);
        prop_assert_eq!(ok, recs.len() as u64);
        let written = write_all(&recs);
        let (again, ok2, bad2) = read_all(&written);
        prop_assert_eq!(bad2, 0, "the writer's own lines are read back: {}", String::from_utf8_lossy(&written));
        prop_assert_eq!(ok2, ok);
        let (third, _, _) = read_all(&write_all(&again));
        prop_assert_eq!(third, again);
    }
}
