//! The kernel's journal as JSON: `journalctl -k -o json` records, one per
//! line, each kernel message in `MESSAGE` (nf_log text, read by
//! [`super::nflog`]).
//!
//! Facts a maintainer needs: `__REALTIME_TIMESTAMP` is the record's wall
//! time in microseconds, as a decimal string; `MESSAGE` is a string, or an
//! array of byte values when the message is not UTF-8; the kernel's own
//! `[uptime]` stamp is not in `MESSAGE` (a log prefix may be). Records
//! that are not nf_log text (USB, audit, …) are ordinary log traffic.

use thiserror::Error;

use super::nflog::{parse_nflog, NflogError};
use crate::record::Record;

/// A journal record that cannot be read.
#[derive(Debug, Error)]
pub enum JournaldError {
    /// The line is not a JSON object.
    #[error("not a JSON record")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    /// A firewall message without the journal's time.
    #[error("no __REALTIME_TIMESTAMP")]
    NoTime,
    /// The message is nf_log text that cannot be read.
    #[error(transparent)]
    Message(#[from] NflogError),
}

/// One `journalctl -o json` record: the event its MESSAGE logged and the
/// interface it came in on, or `None` when the message is not nf_log text.
pub fn parse_journald(line: &str) -> Result<Option<(Record, Option<String>)>, JournaldError> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|source| JournaldError::Json { source })?;
    let msg = match &v["MESSAGE"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => return Ok(None),
    };
    let ts = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .map(|us| us * 1000);
    if ts.is_none() && msg.contains("SRC=") {
        return Err(JournaldError::NoTime);
    }
    Ok(parse_nflog(&msg, ts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{
        parse,
        test_support::{clock, event},
        Format, Parsed,
    };

    #[test]
    fn journald_records() {
        let (r, _) = event(
            Format::Journald,
            r#"{"__REALTIME_TIMESTAMP":"1795629609123456","_TRANSPORT":"kernel","PRIORITY":"4","MESSAGE":"fw-drop: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=44 TTL=50 ID=1 PROTO=TCP SPT=1 DPT=445 WINDOW=1024 RES=0x00 SYN URGP=0 "}"#,
        );
        assert_eq!(r.ts_ns, 1_795_629_609_123_456_000);
        assert_eq!(r.dport, 445);
        // A MESSAGE that is not UTF-8 comes as bytes.
        let bytes: Vec<String> = "IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=44 TTL=50 ID=1 PROTO=UDP SPT=1 DPT=1900 LEN=24"
            .bytes()
            .map(|b| b.to_string())
            .collect();
        let line = format!(
            r#"{{"__REALTIME_TIMESTAMP":"1795629609000000","MESSAGE":[{}]}}"#,
            bytes.join(",")
        );
        assert_eq!(event(Format::Journald, &line).0.dport, 1900);
        let usb = r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"usb 1-1: new high-speed USB device"}"#;
        assert!(matches!(
            parse(Format::Journald, usb, &clock(), 1),
            Parsed::Other
        ));
    }

    #[test]
    fn the_message_errors_are_nflog_s() {
        let e = parse_journald(
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"IN=eth0 SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(e, JournaldError::Message(NflogError::Ports)),
            "{e}"
        );
        assert_eq!(e.to_string(), "no readable SPT=/DPT=");
        // A record without MESSAGE is not a firewall line.
        assert!(parse_journald(r#"{"__REALTIME_TIMESTAMP":"1"}"#)
            .unwrap()
            .is_none());
    }
}
