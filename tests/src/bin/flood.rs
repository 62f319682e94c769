//! `fireplot-flood`: the lab's Mpps generator (see `fireplot_tests::flood`).
//! Run inside the namespace whose interface sends, e.g.
//! `ip netns exec lab-inet fireplot-flood --iface inet0 --dst-mac MAC
//! --src 198.19.0.1 --src-bits 16 --dst 198.18.1.2 --proto tcp --dport 80
//! --count 2000000`. Prints one JSON line: frames per spec, seconds, rate.

use std::{net::IpAddr, time::Duration};

use anyhow::{bail, Context, Result};
use fireplot_tests::flood::{parse_mac, Generator, Spec};

const USAGE: &str = "usage: fireplot-flood --iface IF --dst-mac MAC --dst IP [--src IP] [--src-bits N] \
[--proto tcp|udp|icmp[,..]] [--dport P] [--dport-span N] [--count N] [--rate PPS] [--seed N] [--max-secs S]";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut iface, mut mac, mut dst, mut src) = (None, None, None, None::<IpAddr>);
    let (mut bits, mut protos, mut dport, mut span) = (16u8, "tcp".to_string(), 80u16, 0u16);
    let (mut count, mut rate, mut seed, mut max_secs) = (1_000_000u64, None, 1u64, 60.0f64);
    while let Some(a) = args.next() {
        let mut v = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--iface" => iface = Some(v()?),
            "--dst-mac" => mac = Some(parse_mac(&v()?)?),
            "--dst" => dst = Some(v()?.parse::<IpAddr>()?),
            "--src" => src = Some(v()?.parse::<IpAddr>()?),
            "--src-bits" => bits = v()?.parse()?,
            "--proto" => protos = v()?,
            "--dport" => dport = v()?.parse()?,
            "--dport-span" => span = v()?.parse()?,
            "--count" => count = v()?.parse()?,
            "--rate" => rate = Some(v()?.parse::<f64>()?),
            "--seed" => seed = v()?.parse()?,
            "--max-secs" => max_secs = v()?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let iface = iface.context(USAGE)?;
    let mac = mac.context(USAGE)?;
    let dst = dst.context(USAGE)?;
    let src = src.unwrap_or(if dst.is_ipv4() {
        "198.19.0.1".parse()?
    } else {
        "2001:db8:ff::1".parse()?
    });
    let specs: Vec<Spec> = protos
        .split(',')
        .map(|p| {
            let proto = match (p, dst.is_ipv4()) {
                ("tcp", _) => 6,
                ("udp", _) => 17,
                ("icmp", true) => 1,
                ("icmp", false) => 58,
                _ => bail!("unknown protocol `{p}`"),
            };
            Ok(Spec {
                src,
                src_bits: bits,
                dst,
                proto,
                dport,
                dport_span: span,
            })
        })
        .collect::<Result<_>>()?;
    let mut g = Generator::new(&iface, mac, &specs, seed)?;
    let r = g.send(count, rate, Duration::from_secs_f64(max_secs))?;
    println!(
        "{}",
        serde_json::json!({
            "runs": r.runs,
            "total": r.total(),
            "secs": r.secs,
            "pps": r.total() as f64 / r.secs.max(1e-9),
        })
    );
    Ok(())
}
