//! What a file input (`ingest`, `replay`) kept of what it read: the
//! history's and the fleet's counts at the end, in its closing line, and
//! the error (exit 1) when anything read was not kept.

use crate::{fleet::publish::PublishCounts, store::writer::StoreCounts};

/// The history's and the fleet's counts at the end of a file input.
pub(super) struct Kept {
    pub(super) store: Option<StoreCounts>,
    pub(super) fleet: Option<PublishCounts>,
}

impl Kept {
    /// For the closing line: ", 10 stored, 2 not stored (disk_full 2),
    /// fleet: 12 items published, …" (what is there).
    pub(super) fn text(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.store {
            let why = reasons(c);
            s.push_str(&format!(
                ", {} stored, {} not stored",
                c.stored, c.not_stored
            ));
            if !why.is_empty() {
                s.push_str(&format!(" ({why})"));
            }
        }
        if let Some(f) = &self.fleet {
            s.push_str(&format!(
                ", fleet: {} items published, {} batches still spooled (sent at the next start), {} items dropped",
                f.published_items, f.spool.queued_batches, f.spool.dropped_items
            ));
        }
        s
    }

    /// Everything `read` (events) was kept, or an error that says what
    /// was not and why; `stopped`: why reading ended before the input did.
    pub(super) fn check(&self, read: u64, stopped: Option<&str>) -> anyhow::Result<()> {
        let mut lost: Vec<String> = stopped.map(String::from).into_iter().collect();
        if let Some(c) = self.store.filter(|c| !c.all_stored()) {
            lost.push(format!(
                "{} of {read} events, {} alert records and {} summaries were not stored in the history ({})",
                c.not_stored,
                c.alerts_not_stored,
                c.summaries_not_stored,
                reasons(&c)
            ));
        }
        if let Some(f) = &self.fleet {
            if f.spool.dropped_items > 0 || f.spool_errors > 0 {
                lost.push(format!(
                    "{} items were neither published nor spooled ({} spool errors)",
                    f.spool.dropped_items, f.spool_errors
                ));
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "not everything read was kept: {}; what was stored before is committed",
            lost.join("; ")
        )
    }
}

/// "disk_full 2, db_error 1" (the reasons that happened).
fn reasons(c: &StoreCounts) -> String {
    c.not_stored_by_reason()
        .iter()
        .map(|(r, n)| format!("{} {n}", r.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_kept_is_quiet_anything_lost_is_an_error_with_its_reason() {
        let all = StoreCounts {
            stored: 10,
            ..StoreCounts::default()
        };
        let kept = Kept {
            store: Some(all),
            fleet: None,
        };
        assert_eq!(kept.text(), ", 10 stored, 0 not stored");
        assert!(kept.check(10, None).is_ok());
        let lost = Kept {
            store: Some(StoreCounts {
                stored: 8,
                not_stored: 2,
                not_stored_disk_full: 2,
                ..StoreCounts::default()
            }),
            fleet: None,
        };
        assert_eq!(lost.text(), ", 8 stored, 2 not stored (disk_full 2)");
        let e = lost.check(10, Some("reading stopped after line 7: the disk is full"));
        let e = e.expect_err("lost events are an error").to_string();
        assert!(e.contains("reading stopped after line 7"), "{e}");
        assert!(e.contains("2 of 10 events"), "{e}");
        assert!(e.contains("(disk_full 2)"), "{e}");
    }
}
