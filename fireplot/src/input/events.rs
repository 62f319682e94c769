//! fireplot's own event lines (`--events-out`, `fireplot export`): one
//! JSON object per line, the form [`crate::record::line::EventRecord`]
//! defines; read back into the record it was written from, with the
//! interface name it carries.

use thiserror::Error;

use crate::record::{line::EventRecord, LineError, Record};

/// An event line that cannot be read.
#[derive(Debug, Error)]
pub enum EventLineError {
    /// Not JSON, or not an event's fields.
    #[error("not an event line")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    /// An event's field with a value out of its domain.
    #[error(transparent)]
    Field(#[from] LineError),
}

/// One event line, the `lineno`-th of its input: the record and its
/// interface name.
pub fn parse_event_line(
    line: &str,
    lineno: usize,
) -> Result<(Record, Option<String>), EventLineError> {
    let r: EventRecord =
        serde_json::from_str(line).map_err(|source| EventLineError::Json { source })?;
    let rec = Record::try_from((&r, lineno))?;
    Ok((rec, r.iface))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{
        test_support::{event, NOW},
        Format,
    };

    #[test]
    fn events_lines_round_trip() {
        let r = Record::probe(
            NOW,
            "198.51.100.7".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
            6,
            22,
        );
        let mut j = r.to_json_record();
        j.iface = Some("wan0".into());
        let (back, iface) = event(Format::Events, &j.to_json());
        assert_eq!(back.dport, 22);
        assert_eq!(back.ts_ns, NOW);
        assert_eq!(iface.as_deref(), Some("wan0"));
    }

    #[test]
    fn a_field_out_of_its_domain_names_the_line() {
        let mut j = Record::probe(
            NOW,
            "198.51.100.7".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
            6,
            22,
        )
        .to_json_record();
        j.family = 5;
        let e = parse_event_line(&j.to_json(), 7).unwrap_err();
        assert!(matches!(e, EventLineError::Field(_)), "{e}");
        assert_eq!(e.to_string(), "line 7: bad family 5");
    }
}
