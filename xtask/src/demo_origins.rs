//! Who the demo's sources are: its own small enrichment files name the
//! lab's addresses, and a capture with public source addresses (written
//! here, nothing is downloaded) is replayed through the sensor's own
//! kernel programs with `fireplot replay`, so the public country and
//! network tables have real addresses to name. The addresses are public;
//! the traffic is made up, and the summary says so.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use serde_json::Value;

use anyhow::{Context, Result};
use fireplot_tests::packets::{flags, v4, v6, L4};
use pcap_file::pcap::{PcapPacket, PcapWriter};

/// The demo's enrichment: the lab's addresses are from the benchmarking
/// and documentation ranges, which no public data set maps, so a small
/// network table, country table and scanner list of the demo's own name
/// them (written to the output folder); the public country MMDB and ASN
/// tables `cargo xtask setup` fetched come after them, for any public
/// address.
pub fn enrichment(out: &Path) -> Result<Vec<String>> {
    let cc = out.join("demo-countries.csv");
    std::fs::write(
        &cc,
        "# the demo's own mapping of its lab addresses
         198.18.0.2,198.18.0.13,NL
198.18.0.14,198.18.0.255,DE
         2001:db8::,2001:db8:0:ffff:ffff:ffff:ffff:ffff,SE
",
    )?;
    let asn = out.join("demo-networks.csv");
    std::fs::write(
        &asn,
        "198.18.0.2,198.18.0.13,64496,\"Example Research Net\"
         198.18.0.14,198.18.0.255,64511,\"Example Transit, Inc.\"
         2001:db8::,2001:db8:0:ffff:ffff:ffff:ffff:ffff,64500,Example IPv6 Net
",
    )?;
    let scanners = out.join("demo-research-scanners.txt");
    std::fs::write(
        &scanners,
        format!(
            "# research scanners the demo knows (tagged; ignore_tags could silence them)
198.18.0.13
# a sample of one research scanner's published ranges (the replayed capture uses them)
{}
",
            SCANNER_RANGES.join("\n")
        ),
    )?;
    let data = crate::setup::enrich_dir();
    let mut args = vec![
        "--geoip".to_string(),
        cc.display().to_string(),
        "--asn".into(),
        asn.display().to_string(),
        "--tag".into(),
        format!("research_scanner={}", scanners.display()),
    ];
    args.extend([
        "--geoip".into(),
        data.join("dbip-country.mmdb").display().to_string(),
        "--asn".into(),
        data.join("asn-ipv4.csv").display().to_string(),
        "--asn".into(),
        data.join("asn-ipv6.csv").display().to_string(),
    ]);
    Ok(args)
}

/// " (NL AS64496 Example Research Net [research_scanner])" for an alert
/// with one source whose origin is known, "" otherwise.
pub fn alert_origin(a: &Value) -> String {
    let Some(o) = a["origins"].as_array().and_then(|o| o.first()) else {
        return String::new();
    };
    if a["source_count"] != 1 {
        return String::new();
    }
    let mut parts = Vec::new();
    if let Some(c) = o["country"].as_str() {
        parts.push(c.to_string());
    }
    if let Some(n) = o["asn"].as_u64() {
        parts.push(match o["as_org"].as_str() {
            Some(org) => format!("AS{n} {org}"),
            None => format!("AS{n}"),
        });
    }
    for t in o["tags"].as_array().into_iter().flatten() {
        parts.push(format!("[{}]", t.as_str().unwrap_or("?")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(" "))
    }
}

/// Writes the capture of public sources, replays it into the history
/// with the same enrichment, and says what came of it.
pub fn replay_public(
    bin: &Path,
    out: &Path,
    db: &Path,
    (from_ns, to_ns): (i64, i64),
    range: (&str, &str),
) -> Result<String> {
    crate::demo::step("replaying a capture of public sources through the sensor's programs");
    let pcap = out.join("public-sources.pcap");
    let parts = write(&pcap, from_ns, to_ns)?;
    let alerts = out.join("replay-alerts.jsonl");
    let status = std::process::Command::new(bin)
        .arg("replay")
        .arg("--pcap")
        .arg(&pcap)
        .arg("--db")
        .arg(db)
        .arg("--alerts")
        .arg(&alerts)
        .args(enrichment(out)?)
        .arg("--stats-out")
        .arg(out.join("replay-summary.txt"))
        .status()?;
    if !status.success() {
        anyhow::bail!("fireplot replay failed ({status})");
    }
    let mut text = format!(
        "replayed capture ({}; made up by the demo from public addresses): {}\n",
        pcap.display(),
        parts.join(", ")
    );
    let lines = std::fs::read_to_string(&alerts).unwrap_or_default();
    for a in lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["status"] == "ended")
    {
        text.push_str(&format!(
            "  [{}] {:<16} {}{}\n",
            a["severity"],
            a["kind"].as_str().unwrap_or("?"),
            a["summary"].as_str().unwrap_or(""),
            alert_origin(&a)
        ));
    }
    let top = std::process::Command::new(bin)
        .arg("top")
        .arg("--db")
        .arg(db)
        .args(["--from", range.0, "--to", range.1])
        .args(["--by", "country", "--by", "asn", "-n", "5"])
        .output()?;
    if top.status.success() {
        text.push_str("  who probed (the whole run, from the history's stored origins):\n");
        for l in String::from_utf8_lossy(&top.stdout).lines() {
            text.push_str(&format!("    {l}\n"));
        }
    } else {
        text.push_str(&format!(
            "  fireplot top --by failed: {}\n",
            String::from_utf8_lossy(&top.stderr).trim()
        ));
    }
    Ok(text)
}

/// Research scanners' published ranges the demo tags (`research_scanner`).
pub const SCANNER_RANGES: &[&str] = &["162.142.125.0/24", "167.94.138.0/24"];

/// Public unicast addresses, spread and repeatable: a xorshift walk that
/// skips private, shared, loopback, link-local, documentation, benchmark,
/// multicast and reserved space.
fn public_v4(n: usize) -> Vec<[u8; 4]> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = Ipv4Addr::from((x >> 16) as u32);
        let o = a.octets();
        let special = a.is_private()
            || a.is_loopback()
            || a.is_link_local()
            || a.is_documentation()
            || a.is_multicast()
            || o[0] == 0
            || o[0] >= 224
            || (o[0] == 100 && (64..128).contains(&o[1]))
            || (o[0] == 198 && (18..20).contains(&o[1]))
            || (o[0] == 192 && o[1] == 0 && o[2] == 0)
            || o[3] == 0
            || o[3] == 255;
        if !special {
            out.push(o);
        }
    }
    out
}

/// Writes the capture, its frames' times spread over `from_ns..to_ns`.
/// Returns what it holds, one line per part.
pub fn write(path: &Path, from_ns: i64, to_ns: i64) -> Result<Vec<String>> {
    let wan: [u8; 4] = [198, 18, 0, 1];
    let lan_host = |i: usize| [198, 18, 1, 2 + (i % 20) as u8];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut parts = Vec::new();
    let syn = |sport: u16, dport: u16| L4::Tcp {
        sport,
        dport,
        flags: flags::SYN,
    };
    // Two hosts of a research scanner's published ranges, each sweeping
    // 120 TCP ports of the router.
    for (k, src) in [[162, 142, 125, 21], [167, 94, 138, 35]].iter().enumerate() {
        for p in 0..120u16 {
            frames.push(v4(*src, wan, syn(40_000 + k as u16, 1 + p * 97)));
        }
    }
    parts.push("2 hosts of a research scanner's published ranges, 120 TCP ports each".to_string());
    // A botnet wave: 80 public sources, TCP/7547 (TR-069) on the lan's hosts.
    let bots = public_v4(80);
    for (i, src) in bots.iter().enumerate() {
        for j in 0..2 {
            frames.push(v4(*src, lan_host(i + j), syn(30_000 + i as u16, 7547)));
        }
    }
    parts.push(format!(
        "{} public sources on TCP/7547, 2 probes each",
        bots.len()
    ));
    // UDP amplification probes from one public host.
    let udp_src = public_v4(81)[80];
    for (i, port) in [19u16, 53, 123, 161, 389, 1900, 3702, 5353, 11211, 17185]
        .iter()
        .enumerate()
    {
        for h in 0..3 {
            frames.push(v4(
                udp_src,
                lan_host(i + h),
                L4::Udp {
                    sport: 45_000,
                    dport: *port,
                },
            ));
        }
    }
    parts.push(format!(
        "{} probing 10 UDP amplifier ports",
        Ipv4Addr::from(udp_src)
    ));
    // An IPv6 host in a public /32 sweeping 60 TCP ports.
    let v6_src: [u8; 16] = [
        0x2a, 0x01, 0x04, 0xf8, 0x0c, 0x17, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x05,
    ];
    let v6_dst: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    for p in 0..60u16 {
        frames.push(v6(v6_src, v6_dst, syn(50_000, 20 + p * 211)));
    }
    parts.push(format!(
        "{} sweeping 60 TCP ports over IPv6",
        std::net::Ipv6Addr::from(v6_src)
    ));

    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = PcapWriter::new(file).context("cannot start the capture")?;
    let span = (to_ns - from_ns).max(1) as i128;
    let n = frames.len() as i128;
    for (i, f) in frames.iter().enumerate() {
        // Interleaved: frame i of n at its share of the span.
        let ts = from_ns as i128 + span * i as i128 / n;
        let ts = Duration::from_nanos(ts as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .context("cannot write the capture")?;
    }
    parts.insert(0, format!("{} frames", frames.len()));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_addresses_are_public_and_distinct() {
        let a = super::public_v4(500);
        let mut b = a.clone();
        b.sort();
        b.dedup();
        assert_eq!(b.len(), 500);
        for o in a {
            let ip = std::net::Ipv4Addr::from(o);
            assert!(
                !ip.is_private() && !ip.is_documentation() && o[0] < 224,
                "{ip}"
            );
        }
    }
}
