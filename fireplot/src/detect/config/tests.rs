use super::*;

#[test]
fn file_and_overrides_apply_in_order() {
    let dir = std::env::temp_dir().join(format!("fireplot-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("d.toml");
    std::fs::write(&f, "scan_ports = 20\nflood_pps = 1000\n").unwrap();
    let c = DetectConfig::load(
        Some(&f),
        &["flood_pps=5".into(), "surge_min_ratio = 3.5".into()],
    )
    .unwrap();
    assert_eq!(c.scan_ports, 20);
    assert_eq!(c.flood_pps, 5);
    assert_eq!(c.surge_min_ratio, 3.5);
    assert_eq!(c.sweep_targets, DetectConfig::default().sweep_targets);
    assert!(DetectConfig::load(None, &["no_such_key=1".into()]).is_err());
    assert!(DetectConfig::load(None, &["scan_ports=0".into()]).is_err());
    assert!(DetectConfig::load(None, &["scan_ports".into()]).is_err());
    std::fs::write(&f, "scan_ports = [").unwrap();
    assert!(DetectConfig::load(Some(&f), &[])
        .unwrap_err()
        .to_string()
        .contains("not valid TOML"));
}

#[test]
fn every_setting_is_documented_and_the_print_loads_again() {
    let cfg = DetectConfig::default();
    let table = toml::Table::try_from(&cfg).unwrap();
    for key in table.keys() {
        assert!(
            DOCS.iter().any(|(k, _)| k == key),
            "{key} has no line in DOCS"
        );
    }
    assert_eq!(DOCS.len(), table.len(), "DOCS names only settings");
    let printed = cfg.to_documented_toml();
    assert!(printed.starts_with("# port_scan"), "{printed}");
    assert_eq!(printed.parse::<toml::Table>().unwrap(), table);
}

#[test]
fn every_field_is_checked() {
    for (set, key) in [
        ("sweep_max_ports=0", "sweep_max_ports"),
        ("episode_idle_s=0", "episode_idle_s"),
        ("surge_min_ratio=0.5", "surge_min_ratio"),
        ("surge_min_ratio=nan", "surge_min_ratio"),
        ("surge_horizons_s=[700]", "surge_horizons_s"),
        ("surge_false_alarm=2", "surge_false_alarm"),
        ("hammer_levels=[5, 5, 150, 1500, 10000]", "hammer_levels"),
        ("sync_same_order=1.5", "sync_same_order"),
        ("flood_port_max_share=0", "flood_port_max_share"),
        ("distributed_max_sources=1", "distributed_max_sources"),
        ("fast_max_interval_s=-1", "fast_max_interval_s"),
        ("source_idle_s=99999999999", "source_idle_s"),
        ("memory_mib=8", "memory_mib"),
        ("episode_pace_factor=0.5", "episode_pace_factor"),
        ("episode_max_idle_s=60", "episode_max_idle_s"),
        ("actor_idle_s=0", "actor_idle_s"),
        ("mirai_telnet_syns=0", "mirai_telnet_syns"),
    ] {
        let e = DetectConfig::load(None, &[set.into()]).unwrap_err();
        assert!(e.to_string().contains(key), "{set}: {e}");
    }
    assert!(DetectConfig::default().validate().is_ok());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Vec<String> {
        let t = toml::Table::try_from(DetectConfig::default()).expect("defaults serialize");
        t.keys().cloned().collect()
    }

    /// A TOML value of any kind, near and far from the valid ones.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (0u64..100_000).prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("-0.0".to_string()),
            "[a-z0-9\\. \"=\\[\\]]{0,10}",
            Just("true".to_string()),
            Just("[1, 2]".to_string()),
        ]
    }

    fn entries() -> impl Strategy<Value = Vec<(String, String)>> {
        let keys = keys();
        let key = prop_oneof![
            8 => proptest::sample::select(keys),
            1 => "[a-z_]{1,12}",
        ];
        proptest::collection::vec((key, value()), 0..6)
    }

    proptest! {
        #![proptest_config(crate::record::proptests::config(5_000))]

        /// Whatever the file and the --set arguments say, loading never
        /// panics, and a config it accepts passes validation and is
        /// printed (--print-config) as a file that loads to the same.
        #[test]
        fn any_settings_load_or_fail_cleanly(
            file in entries(),
            sets in entries(),
            raw in "[ -~]{0,40}",
        ) {
            let dir = std::env::temp_dir().join(format!("fireplot-cfgprop-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("c.toml");
            let mut text = String::new();
            for (k, v) in &file {
                text.push_str(&format!("{k} = {v}\n"));
            }
            text.push_str(&raw);
            std::fs::write(&path, &text).unwrap();
            let sets: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if let Ok(cfg) = DetectConfig::load(Some(&path), &sets) {
                prop_assert!(cfg.validate().is_ok());
                let printed = toml::to_string(&cfg).expect("prints");
                std::fs::write(&path, printed).unwrap();
                let again = DetectConfig::load(Some(&path), &[]).expect("its own print loads");
                prop_assert_eq!(again, cfg);
            }
        }
    }
}
