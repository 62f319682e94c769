//! Who a source is: its country, its network and the lists it is on, as
//! event lines, alerts and the stores carry it (the enricher finds it,
//! `enrich`), and the groups of sources a plot colours by.

use serde::{Deserialize, Serialize};

/// What is known of one address. Empty when nothing is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Origin {
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.asn.is_none() && self.tags.is_empty()
    }

    /// "AS64496 Example Org" (or "AS64496"), if the ASN is known.
    pub fn as_label(&self) -> Option<String> {
        self.asn.map(|a| match &self.as_org {
            Some(o) => format!("AS{a} {o}"),
            None => format!("AS{a}"),
        })
    }
}

/// Which group of sources a probe belongs to: none (the fireplot's own
/// colours, by family and protocol), its source's country or its network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// Family and protocol: the fireplot's own palette.
    #[default]
    Proto,
    /// The source's country.
    Country,
    /// The source's network (autonomous system).
    Asn,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "proto" | "protocol" => Some(GroupBy::Proto),
            "country" => Some(GroupBy::Country),
            "asn" | "network" => Some(GroupBy::Asn),
            _ => None,
        }
    }

    /// The group a stored origin puts its source in (None: unknown).
    pub fn key(self, o: &Origin) -> Option<String> {
        match self {
            GroupBy::Proto => None,
            GroupBy::Country => o.country.clone(),
            GroupBy::Asn => o.asn.map(|a| match &o.as_org {
                Some(org) => format!("AS{a} {}", short(org, 24)),
                None => format!("AS{a}"),
            }),
        }
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_countries_and_networks() {
        let o = Origin {
            country: Some("NL".into()),
            asn: Some(64496),
            as_org: Some("A very long organisation name indeed, Ltd".into()),
            tags: vec![],
        };
        assert_eq!(GroupBy::Country.key(&o).as_deref(), Some("NL"));
        assert_eq!(
            GroupBy::Asn.key(&o).as_deref(),
            Some("AS64496 A very long organisatio…")
        );
        assert_eq!(GroupBy::Proto.key(&o), None);
        assert_eq!(GroupBy::Asn.key(&Default::default()), None);
        assert_eq!(GroupBy::parse("network"), Some(GroupBy::Asn));
        assert_eq!(GroupBy::parse("pink"), None);
    }
}
