//! The configuration file: round trips, precedence, errors.

use super::*;

fn temp(name: &str, text: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-config-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn parse(args: &[OsString]) -> RunArgs {
    let mut all = vec![OsString::from("fireplot run")];
    all.extend_from_slice(args);
    RunCli::try_parse_from(all)
        .unwrap_or_else(|e| panic!("{e}"))
        .run
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// A value for every key of `run` that is not its default.
fn value_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "iface" => "[\"wan7\", \"wan8\"]",
        "warm_up" => "\"12h\"",
        "xdp_mode" => "\"skb\"",
        "service" => "[\"tcp/443\", \"udp/53\"]",
        "events_out" => "\"/var/log/fireplot/events.jsonl\"",
        "db" => "\"/var/lib/fireplot/h.db\"",
        "web" => "\"127.0.0.1:8781\"",
        "token" => "\"s3cret-token-value\"",
        "token_file" => "\"/etc/fireplot/token\"",
        "retain" => "\"30d\"",
        "plot_dir" => "\"/var/lib/fireplot/plots\"",
        "plot_every" => "\"10m\"",
        "plot_window" => "\"12h\"",
        "plot_svg" => "true",
        "plot_theme" => "\"light\"",
        "plot_utc" => "true",
        "alerts" => "\"/var/log/fireplot/alerts.jsonl\"",
        "detect_config" => "\"/etc/fireplot/detect.toml\"",
        "stats_every" => "\"5m\"",
        "stats_json" => "true",
        "stats_out" => "\"/var/log/fireplot/stats.jsonl\"",
        "duration" => "\"1h\"",
        "rate_limit" => "5000",
        "rate_burst" => "20000",
        "target_limit" => "4000",
        "target_burst" => "8000",
        "event_budget" => "150000",
        "tcp_timeout" => "3600",
        "tcp_closing_timeout" => "60",
        "udp_timeout" => "90",
        "icmp_timeout" => "20",
        "other_timeout" => "300",
        "emit_malformed" => "true",
        "no_dark" => "true",
        "ring_mib" => "32",
        "flow_table_size" => "131072",
        "aggregate_table" => "32768",
        "geoip" => "[\"/var/lib/fireplot/country.mmdb\"]",
        "asn" => "[\"/var/lib/fireplot/asn-ipv4.csv\", \"/var/lib/fireplot/asn-ipv6.csv\"]",
        "tag" => "[\"research_scanner=/etc/fireplot/scanners.txt\", \"blocklist=/etc/fireplot/drop.txt\"]",
        "publish" => "\"nats://centre.example:4222\"",
        "sensor" => "\"edge-7\"",
        "spool_dir" => "\"/var/lib/fireplot/fleet\"",
        "spool_max_mib" => "512",
        "nats_creds" => "\"/etc/fireplot/nats.creds\"",
        "nats_user" => "\"edge\"",
        "nats_password_file" => "\"/etc/fireplot/nats.pass\"",
        "nats_token_file" => "\"/etc/fireplot/nats.token\"",
        "nats_tls_ca" => "\"/etc/fireplot/ca.pem\"",
        "nats_tls_cert" => "\"/etc/fireplot/edge.pem\"",
        "nats_tls_key" => "\"/etc/fireplot/edge.key\"",
        "nats_require_tls" => "true",
        "stream" => "\"FLEET\"",
        _ => return None,
    })
}

#[test]
fn every_flag_round_trips_through_the_file() {
    let mut file = String::new();
    let mut flags: Vec<String> = Vec::new();
    for arg in RunCli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let key = key_of(long);
        // token conflicts with token_file: it gets a file of its own below.
        if NOT_KEYS.contains(&key.as_str()) || key == "token" {
            continue;
        }
        let v = value_for(&key).unwrap_or_else(|| panic!("no test value for the new key `{key}`"));
        file.push_str(&format!("{key} = {v}\n"));
        match v {
            "true" => flags.push(format!("--{long}")),
            list if list.starts_with('[') => {
                for item in list.trim_matches(['[', ']']).split(", ") {
                    flags.push(format!("--{long}"));
                    flags.push(item.trim_matches('"').to_string());
                }
            }
            v => {
                flags.push(format!("--{long}"));
                flags.push(v.trim_matches('"').to_string());
            }
        }
    }
    file.push_str("[detect]\nscan_ports = 9\nflood_pps = 30000\n");
    flags.extend(["--set", "flood_pps=30000", "--set", "scan_ports=9"].map(String::from));
    let from_file = parse(&file_args(&temp("all.toml", &file)).unwrap());
    let from_flags = parse(&flags.iter().map(OsString::from).collect::<Vec<_>>());
    assert_eq!(format!("{from_file:?}"), format!("{from_flags:?}"));
    assert_eq!(from_file.classifier.rate_limit, 5000);
    assert!(from_file.classifier.no_dark);
    assert!(from_file.detect.set.contains(&"scan_ports=9".to_string()));
    let tok = "iface = \"wan0\"\ndb = \"x.db\"\nweb = \"127.0.0.1:8781\"\ntoken = \"s3cret-token-value\"\n";
    let a = file_args(&temp("tok.toml", tok)).unwrap();
    assert_eq!(parse(&a).token.as_deref(), Some("s3cret-token-value"));
    let shown = effective(&a).unwrap();
    assert!(
        !shown.contains("s3cret"),
        "the token is never printed: {shown}"
    );

    // What `config check` prints reads back to the same configuration.
    let base =
        "iface = \"wan0\"\nrate_limit = 2500\nservice = [\"tcp/22\"]\n[detect]\nscan_ports = 8\n";
    let a = file_args(&temp("base.toml", base)).unwrap();
    let printed = effective(&a).unwrap();
    let again = file_args(&temp("printed.toml", &printed)).unwrap();
    assert_eq!(effective(&again).unwrap(), printed);
    assert!(printed.contains("rate_limit = 2500"), "{printed}");
    assert!(printed.contains("scan_ports = 8"), "{printed}");
    assert!(
        printed.contains("tcp_timeout = 432000"),
        "defaults are filled in: {printed}"
    );
}

#[test]
fn several_wan_interfaces_from_a_file_or_flags() {
    for (file, want) in [
        ("iface = [\"wan0\", \"wan1\"]\n", vec!["wan0", "wan1"]),
        ("iface = \"wan0\"\n", vec!["wan0"]),
    ] {
        let f = temp("wans.toml", file);
        let args = expand(os(&["fireplot", "run", "--config", f.to_str().unwrap()])).unwrap();
        let mut cli = vec![OsString::from("fireplot run")];
        cli.extend_from_slice(&args[2..]);
        let run = RunCli::try_parse_from(cli).unwrap().run;
        assert_eq!(run.iface, want, "{file}");
    }
    let run = RunCli::try_parse_from(["fireplot run", "-i", "wan0", "--iface", "bond0.7"])
        .unwrap()
        .run;
    assert_eq!(
        (run.iface.as_slice(), run.label()),
        (
            &["wan0".to_string(), "bond0.7".to_string()][..],
            "wan0+bond0.7".to_string()
        )
    );
    let twice = RunCli::try_parse_from(["fireplot run", "-i", "wan0", "-i", "wan0"])
        .unwrap()
        .run;
    let e = twice.check().unwrap_err().to_string();
    assert!(e.contains("--iface wan0 is given twice"), "{e}");
}

#[test]
fn flags_override_the_file() {
    let f = temp(
        "prec.toml",
        "iface = \"wan0\"\nrate_limit = 5000\nservice = [\"tcp/443\", \"udp/53\"]\n[detect]\nscan_ports = 9\nsweep_targets = 7\n",
    );
    let f = f.to_str().unwrap();
    let argv = os(&[
        "fireplot",
        "run",
        "--config",
        f,
        "--rate-limit",
        "7000",
        "--service",
        "tcp/22",
        "--set",
        "scan_ports=11",
    ]);
    let args = expand(argv).unwrap();
    let mut cli = vec![OsString::from("fireplot run")];
    cli.extend_from_slice(&args[2..]);
    let run = RunCli::try_parse_from(cli).unwrap().run;
    assert_eq!(run.iface, ["wan0"], "from the file");
    assert_eq!(run.classifier.rate_limit, 7000, "the flag wins");
    assert_eq!(
        run.classifier.services.len(),
        1,
        "a repeated flag replaces the file's list"
    );
    let d = run.detect.load().unwrap();
    assert_eq!(
        (d.scan_ports, d.sweep_targets),
        (11, 7),
        "--set wins per key"
    );
    // --config=FILE, and without --config nothing changes.
    let args = expand(os(&[
        "fireplot",
        "run",
        &format!("--config={f}"),
        "-i",
        "wan9",
    ]))
    .unwrap();
    assert!(args.iter().any(|a| a == "--rate-limit"));
    let plain = os(&["fireplot", "run", "-i", "wan0"]);
    assert_eq!(expand(plain.clone()).unwrap(), plain);
    let other = os(&["fireplot", "detect", "--config", "x.toml"]);
    assert_eq!(
        expand(other.clone()).unwrap(),
        other,
        "detect's --config is its own"
    );
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    for (text, want) in [
        (
            "iface = \"wan0\"\nrate_limt = 5\n",
            "unknown key `rate_limt`",
        ),
        ("iface = \"wan0\"\nconfig = \"x\"\n", "unknown key `config`"),
        ("scan_ports = 9\n", "put it under [detect]"),
        (
            "iface = \"wan0\"\nrate_limit = true\n",
            "is not a value for --rate-limit",
        ),
        (
            "iface = \"wan0\"\nplot_svg = \"yes\"\n",
            "write true or false",
        ),
        ("iface = \"wan0\"\ndetect = 5\n", "must be a table"),
        ("iface = \"wan0\"\nrate_limit = \n", "not valid TOML"),
    ] {
        let e = file_args(&temp("bad.toml", text)).map(|_| ()).unwrap_err();
        assert!(
            format!("{e:#}").contains(want),
            "{text}: `{e:#}` lacks `{want}`"
        );
    }
    // Values clap or the detector refuse, named.
    for (text, want) in [
        ("iface = \"wan0\"\nrate_limit = \"lots\"\n", "rate-limit"),
        ("iface = \"wan0\"\nring_mib = 3\n", "power of two"),
        ("iface = \"wan0\"\n[detect]\nscan_portz = 3\n", "scan_portz"),
        ("iface = \"wan0\"\n[detect]\nscan_ports = 0\n", "scan_ports"),
        ("iface = \"wan0\"\nstats_every = \"1ms\"\n", "--stats-every"),
        ("rate_limit = 5\n", "--iface"),
    ] {
        let a = file_args(&temp("bad2.toml", text)).unwrap();
        let e = effective(&a).unwrap_err();
        assert!(
            format!("{e:#}").contains(want),
            "{text}: `{e:#}` lacks `{want}`"
        );
    }
    assert!(file_args(Path::new("/nonexistent/fireplot.toml")).is_err());
}

#[test]
fn the_example_is_a_valid_file() {
    let text = example();
    assert!(text.contains("# rate_limit = 10000"), "{text}");
    assert!(text.contains("[detect]"));
    let a = file_args(&temp("example.toml", &text)).unwrap();
    let printed = effective(&a).unwrap();
    assert!(printed.contains("iface = [\"wan0\"]"), "{printed}");
}
