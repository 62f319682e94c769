//! The fleet's lab: several router labs ([`crate::Lab`]) and a centre
//! namespace holding the broker, joined to each router by a veth pair
//! (router i: `fleet0` 198.19.i.2/30, centre: `r{i}` 198.19.i.1/30). Only
//! namespaces this code creates carry the traffic; the database is reached
//! through its Unix socket (the file system crosses namespaces).

use std::process::{Command, Stdio};

use anyhow::Result;

use crate::{ip_batch, run, Lab, Node};

/// The centre namespace; removed when dropped.
pub struct Centre {
    pub ns: String,
}

impl Centre {
    /// Creates `{prefix}-centre` and links every lab's router to it.
    pub fn up(prefix: &str, labs: &[&Lab]) -> Result<Centre> {
        crate::check_prefix(prefix)?;
        let ns = format!("{prefix}-centre");
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        let c = Centre { ns };
        ip_batch(&c.ns, "link set lo up\n")?;
        for (i, lab) in labs.iter().enumerate() {
            let n = i + 1;
            let router = lab.ns(Node::Router);
            run(Command::new("ip").args([
                "link",
                "add",
                "fleet0",
                "netns",
                &router,
                "type",
                "veth",
                "peer",
                "name",
                &format!("r{n}"),
                "netns",
                &c.ns,
            ]))?;
            ip_batch(
                &router,
                &format!("link set fleet0 up\naddr add 198.19.{n}.2/30 dev fleet0\n"),
            )?;
            ip_batch(
                &c.ns,
                &format!("link set r{n} up\naddr add 198.19.{n}.1/30 dev r{n}\n"),
            )?;
        }
        Ok(c)
    }

    /// The broker's address as router `i` (from 0) reaches it.
    pub fn broker_addr(i: usize) -> String {
        format!("198.19.{}.1", i + 1)
    }

    /// A command that runs `program` inside the centre.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}
