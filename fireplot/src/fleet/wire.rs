//! What a sensor sends the centre: one NATS message per batch, binary.
//!
//! ```text
//! "FPB1"  kind(u8: 1 events, 2 alerts, 3 counters)
//! sensor: len(u8) + UTF-8
//! first_seq(u64 LE)  count(u32 LE)
//! interfaces: n(u16 LE), n × (ifindex u32 LE, len u8, UTF-8 name)
//! events:            count × 72-byte rows (the store's row format)
//! alerts / counters: count × (len u32 LE, UTF-8 JSON line)
//! ```
//!
//! Item `i` of a batch has the sequence number `first_seq + i`; a
//! sensor's numbers never repeat (see [`super::spool::Sequence`]), so the
//! collector can drop what it already stored by (sensor, seq).

use thiserror::Error;

use crate::{
    record::Record,
    store::row::{self, ROW},
};

const MAGIC: &[u8; 4] = b"FPB1";

/// Why a message is not a batch, or a name not a sensor's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// It does not start with the magic.
    #[error("not a fireplot batch (bad magic)")]
    BadMagic,
    /// A kind this build does not know.
    #[error("unknown batch kind {kind}")]
    UnknownKind { kind: u8 },
    /// The sensor name is empty.
    #[error("a batch without a sensor name")]
    NoSensor,
    /// It ends before what its header announces.
    #[error("the batch is cut short ({len} bytes, {wanted} more wanted at {at})")]
    CutShort {
        len: usize,
        wanted: usize,
        at: usize,
    },
    /// Its item count times the row size does not fit in memory.
    #[error("count overflows")]
    CountOverflows,
    /// A name or a line is not UTF-8.
    #[error("a name or line is not UTF-8")]
    NotUtf8,
    /// Bytes follow the last item.
    #[error("{extra} bytes after the batch")]
    Trailing { extra: usize },
    /// A sensor name a NATS subject cannot hold.
    #[error(
        "sensor name `{name}`: 1 to 64 letters, digits, - and _ (it is part of a NATS subject)"
    )]
    SensorName { name: String },
}

/// Why a line of an alerts or counters batch cannot be stored: what
/// PostgreSQL's `jsonb` refuses (an SQLSTATE class 22 error that would fail
/// the whole transaction, on every retry).
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum LineError {
    /// Not JSON (or a lone surrogate, or a number no float holds).
    #[error("not JSON")]
    NotJson,
    /// A string or key holds U+0000, which `jsonb` (text) cannot.
    #[error("holds \\u0000, which PostgreSQL's jsonb cannot store")]
    Nul,
    /// A number PostgreSQL's numeric cannot hold though a float can
    /// (more than 16383 digits after the point, e.g. `1e-20000`, or an
    /// exponent over 131071, e.g. `0e2000000000`).
    #[error("a number PostgreSQL's numeric cannot hold (more than 16383 digits after the point, or an exponent over 131071)")]
    Number,
}

impl LineError {
    /// Every reason, in a fixed order (for "logged once per reason").
    pub const ALL: [LineError; 3] = [LineError::NotJson, LineError::Nul, LineError::Number];
}

/// The most digits after the point PostgreSQL's numeric holds
/// (NUMERIC_DSCALE_MAX).
const PG_MAX_SCALE: i64 = 16383;
/// The largest exponent it takes (about its most digits before the point).
const PG_MAX_EXP: i64 = 131071;

/// Checks one alert or counter line: JSON that PostgreSQL's `jsonb`
/// accepts.
pub fn check_line(line: &str) -> Result<(), LineError> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| LineError::NotJson)?;
    if has_nul(&v) {
        return Err(LineError::Nul);
    }
    if !numbers(line).all(numeric_holds) {
        return Err(LineError::Number);
    }
    Ok(())
}

fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match v {
        V::String(s) => s.contains('\0'),
        V::Array(a) => a.iter().any(has_nul),
        V::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The number literals of a line that is JSON already.
fn numbers(line: &str) -> impl Iterator<Item = &str> + '_ {
    let b = line.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < b.len() {
            match b[at] {
                b'"' => {
                    at += 1;
                    while at < b.len() && b[at] != b'"' {
                        at += if b[at] == b'\\' { 2 } else { 1 };
                    }
                    at += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = at;
                    while at < b.len()
                        && matches!(b[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        at += 1;
                    }
                    return Some(&line[start..at]);
                }
                _ => at += 1,
            }
        }
        None
    })
}

/// Whether PostgreSQL's numeric takes a JSON number literal: its scale
/// (digits after the point, less the exponent) and its exponent in range.
fn numeric_holds(num: &str) -> bool {
    let (mantissa, exp) = match num.find(['e', 'E']) {
        Some(i) => match num[i + 1..].parse::<i64>() {
            Ok(e) => (&num[..i], e),
            Err(_) => return false,
        },
        None => (num, 0),
    };
    let frac = mantissa.find('.').map_or(0, |i| mantissa.len() - i - 1) as i64;
    exp <= PG_MAX_EXP && frac.saturating_sub(exp) <= PG_MAX_SCALE
}

/// What a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Events = 1,
    Alerts = 2,
    Counters = 3,
}

impl Kind {
    /// The last part of its subject: `fireplot.<sensor>.<part>`.
    pub fn subject_part(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Alerts => "alerts",
            Kind::Counters => "counters",
        }
    }
}

/// One batch, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub sensor: String,
    pub first_seq: u64,
    pub interfaces: Vec<(u32, String)>,
    pub body: Body,
    /// Lines of an alerts or counters batch that PostgreSQL would refuse
    /// ([`check_line`]), by index: [`Batch::decode`] finds them, the
    /// collector stores the batch without them (their sequence numbers
    /// stay unused). Empty for a batch being sent.
    pub bad_lines: Vec<(usize, LineError)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Events(Vec<Record>),
    /// JSON lines (alerts or counter summaries).
    Lines(Kind, Vec<String>),
}

impl Batch {
    pub fn kind(&self) -> Kind {
        match &self.body {
            Body::Events(_) => Kind::Events,
            Body::Lines(k, _) => *k,
        }
    }

    pub fn len(&self) -> usize {
        match &self.body {
            Body::Events(e) => e.len(),
            Body::Lines(_, l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.len() * ROW);
        b.extend_from_slice(MAGIC);
        b.push(self.kind() as u8);
        let name = &self.sensor.as_bytes()[..self.sensor.len().min(255)];
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b.extend_from_slice(&self.first_seq.to_le_bytes());
        b.extend_from_slice(&(self.len() as u32).to_le_bytes());
        let ifs = &self.interfaces[..self.interfaces.len().min(u16::MAX as usize)];
        b.extend_from_slice(&(ifs.len() as u16).to_le_bytes());
        for (i, n) in ifs {
            b.extend_from_slice(&i.to_le_bytes());
            let n = &n.as_bytes()[..n.len().min(255)];
            b.push(n.len() as u8);
            b.extend_from_slice(n);
        }
        match &self.body {
            Body::Events(recs) => {
                let start = b.len();
                b.resize(start + recs.len() * ROW, 0);
                for (r, out) in recs.iter().zip(b[start..].chunks_exact_mut(ROW)) {
                    row::encode(r, out);
                }
            }
            Body::Lines(_, lines) => {
                for l in lines {
                    b.extend_from_slice(&(l.len() as u32).to_le_bytes());
                    b.extend_from_slice(l.as_bytes());
                }
            }
        }
        b
    }

    /// Reads a batch; a message that is not one says why. Lines that are
    /// not JSON PostgreSQL accepts are listed in `bad_lines`.
    pub fn decode(b: &[u8]) -> Result<Batch, WireError> {
        let mut r = Reader { b, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let kind = match r.u8()? {
            1 => Kind::Events,
            2 => Kind::Alerts,
            3 => Kind::Counters,
            kind => return Err(WireError::UnknownKind { kind }),
        };
        let n = r.u8()? as usize;
        let sensor = r.string(n)?;
        if sensor.is_empty() {
            return Err(WireError::NoSensor);
        }
        let first_seq = u64::from_le_bytes(r.take(8)?.try_into().expect("8"));
        let count = u32::from_le_bytes(r.take(4)?.try_into().expect("4")) as usize;
        let nif = u16::from_le_bytes(r.take(2)?.try_into().expect("2")) as usize;
        let mut interfaces = Vec::with_capacity(nif);
        for _ in 0..nif {
            let i = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
            let n = r.u8()? as usize;
            interfaces.push((i, r.string(n)?));
        }
        let mut bad_lines = Vec::new();
        let body = match kind {
            Kind::Events => {
                let rows = r.take(count.checked_mul(ROW).ok_or(WireError::CountOverflows)?)?;
                Body::Events(rows.chunks_exact(ROW).map(row::decode).collect())
            }
            k => {
                let mut lines = Vec::with_capacity(count.min(1 << 16));
                for i in 0..count {
                    let n = u32::from_le_bytes(r.take(4)?.try_into().expect("4")) as usize;
                    let line = r.string(n)?;
                    if let Err(e) = check_line(&line) {
                        bad_lines.push((i, e));
                    }
                    lines.push(line);
                }
                Body::Lines(k, lines)
            }
        };
        if r.at != b.len() {
            return Err(WireError::Trailing {
                extra: b.len() - r.at,
            });
        }
        Ok(Batch {
            sensor,
            first_seq,
            interfaces,
            body,
            bad_lines,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(e) => {
                let s = &self.b[self.at..e];
                self.at = e;
                Ok(s)
            }
            None => Err(WireError::CutShort {
                len: self.b.len(),
                wanted: n,
                at: self.at,
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn string(&mut self, n: usize) -> Result<String, WireError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| WireError::NotUtf8)
    }
}

/// A sensor name: what a NATS subject token and a database label can hold.
pub fn check_sensor_name(s: &str) -> Result<(), WireError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(WireError::SensorName { name: s.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> Record {
        let mut r = Record::probe(
            1_800_000_000_000_000_000 + i as i64,
            "198.51.100.7".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            6,
            i as u16,
        );
        r.ifindex = 3;
        r.count = i + 1;
        r
    }

    #[test]
    fn batches_round_trip() {
        let b = Batch {
            sensor: "edge-1".into(),
            first_seq: 41,
            interfaces: vec![(3, "wan0".into()), (7, "pppoe-wan".into())],
            body: Body::Events((0..100).map(rec).collect()),
            bad_lines: vec![],
        };
        assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
        let a = Batch {
            sensor: "edge-1".into(),
            first_seq: 141,
            interfaces: vec![],
            body: Body::Lines(
                Kind::Alerts,
                vec!["{\"kind\":\"port_scan\"}".into(), "{}".into()],
            ),
            bad_lines: vec![],
        };
        assert_eq!(Batch::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn damaged_batches_are_refused_with_a_reason() {
        let b = Batch {
            sensor: "s".into(),
            first_seq: 0,
            interfaces: vec![(1, "eth0".into())],
            body: Body::Events((0..3).map(rec).collect()),
            bad_lines: vec![],
        }
        .encode();
        for cut in [0, 3, 5, 10, b.len() - 1] {
            assert!(Batch::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(Batch::decode(&extra)
            .unwrap_err()
            .to_string()
            .contains("after the batch"));
        let mut magic = b.clone();
        magic[0] = b'X';
        assert!(Batch::decode(&magic)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut count = b.clone();
        // count field: after magic(4) kind(1) len(1) "s"(1) seq(8)
        count[15..19].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Batch::decode(&count).is_err());
    }

    #[test]
    fn lines_postgres_refuses_are_listed_the_rest_kept_in_place() {
        let lines: Vec<String> = [
            r#"{"kind":"port_scan","n":1.5e-400}"#,
            r#"{"kind":"x","note":"a\u0000b"}"#,
            r#"{"kind":"x"#,
            r#"{"ok":"\ud83d\ude00 [1e5] \"1e-20000\""}"#,
            r#"{"a\u0000":1}"#,
            r#"[1e-20000]"#,
            r#"{"z":0e2000000000}"#,
            r#""\ud800""#,
            r#"{"big":123456789012345678901234567890,"small":-0.25E+3}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let b = Batch {
            sensor: "edge-1".into(),
            first_seq: 10,
            interfaces: vec![],
            body: Body::Lines(Kind::Alerts, lines.clone()),
            bad_lines: vec![],
        };
        let d = Batch::decode(&b.encode()).unwrap();
        use LineError::*;
        assert_eq!(
            d.bad_lines,
            vec![
                (1, Nul),
                (2, NotJson),
                (4, Nul),
                (5, Number),
                (6, Number),
                (7, NotJson)
            ]
        );
        // Every line still there: a line's sequence number is its index.
        assert_eq!(d.body, Body::Lines(Kind::Alerts, lines));
        assert!(Nul.to_string().contains("\\u0000"), "{}", Nul);
    }

    #[test]
    fn sensor_names_fit_a_subject() {
        assert!(check_sensor_name("edge-1_b").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(check_sensor_name(bad).is_err(), "{bad}");
        }
    }
}
