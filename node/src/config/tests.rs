use super::*;
use crate::guests::config::GuestBackendKind;
use crate::sensors::config::{CapSource, SensorMode};
use maxwell_types::{MicroWatts, MilliCelsius};

fn parse(text: &str) -> Result<Config, String> {
    let raw = RawConfig::from_toml(text).map_err(|(line, msg)| format!("line {line}: {msg}"))?;
    raw.validate().map_err(|e| e.to_string())
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = parse("").expect("defaults are valid");
    assert_eq!(c.rack, "default");
    assert_eq!(c.slot, 0);
    assert_eq!(c.http_addr, DEFAULT_HTTP_ADDR.parse().expect("valid"));
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.sensors.mode, SensorMode::Auto);
    assert_eq!(c.sensors.interval, Duration::from_millis(100));
    assert_eq!(c.sensors.default_critical, MilliCelsius(95_000));
    assert_eq!(
        c.power.cap_sources,
        vec![CapSource::Hwmon, CapSource::Rapl, CapSource::Config]
    );
    assert_eq!(c.power.budget, None);
    assert_eq!(c.emulated, EmulatedParams::default());
}

#[test]
fn full_file_is_read_into_typed_values() {
    let c = parse(
        r#"
        name = "r1-u07"
        rack = "r1"
        slot = 7
        data_dir = "/tmp/mx"
        http_addr = "0.0.0.0:9000"
        [sensors]
        source = "emulated"
        interval_ms = 250
        default_critical_celsius = 90.5
        exclude_chips = ["acpitz"]
        [power]
        budget_w = 450.5
        cap_sources = ["config", "rapl"]
        [emulated]
        idle_w = 120
        peak_w = 380
        inlet_celsius = 30
        extra_load = 0.5
        "#,
    )
    .expect("valid");
    assert_eq!(
        (c.name.as_str(), c.rack.as_str(), c.slot),
        ("r1-u07", "r1", 7)
    );
    assert_eq!(c.sensors.mode, SensorMode::Emulated);
    assert_eq!(c.sensors.interval, Duration::from_millis(250));
    assert_eq!(c.sensors.default_critical, MilliCelsius(90_500));
    assert_eq!(c.sensors.exclude_chips, vec!["acpitz".to_string()]);
    assert_eq!(c.power.budget, Some(MicroWatts(450_500_000)));
    assert_eq!(
        c.power.cap_sources,
        vec![CapSource::Config, CapSource::Rapl]
    );
    assert_eq!(c.emulated.idle, MicroWatts(120_000_000));
    assert_eq!(c.emulated.inlet, MilliCelsius(30_000));
    assert_eq!(c.emulated.extra_load, 0.5);
}

#[test]
fn unknown_field_names_the_field_and_line() {
    let err = parse("rack = \"r1\"\n[sensors]\nintervall_ms = 5\n").expect_err("unknown field");
    assert!(err.starts_with("line 3:"), "{err}");
    assert!(err.contains("intervall_ms"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn wrong_type_is_a_parse_error() {
    let err = parse("slot = \"seven\"\n").expect_err("type");
    assert!(err.starts_with("line 1:"), "{err}");
}

#[test]
fn invalid_values_name_the_field() {
    let cases = [
        ("slot = 70000", "`slot`"),
        ("rack = \"r 1\"", "`rack`"),
        ("name = \"\"", "`name`"),
        ("http_addr = \"localhost\"", "`http_addr`"),
        ("[sensors]\ninterval_ms = 0", "`sensors.interval_ms`"),
        (
            "[sensors]\ndefault_critical_celsius = 500",
            "`sensors.default_critical_celsius`",
        ),
        ("[power]\nbudget_w = -3", "`power.budget_w`"),
        ("[power]\ncap_sources = []", "`power.cap_sources`"),
        (
            "[power]\ncap_sources = [\"rapl\", \"rapl\"]",
            "`power.cap_sources`",
        ),
        ("[emulated]\nidle_w = 400", "`emulated.peak_w`"),
        ("[emulated]\nextra_load = 1.5", "`emulated.extra_load`"),
        (
            "[emulated]\ntime_constant_s = 0",
            "`emulated.time_constant_s`",
        ),
    ];
    for (text, field) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.contains(field), "{text:?} gave {err:?}");
    }
}

#[test]
fn unknown_enum_value_is_rejected() {
    let err = parse("[sensors]\nsource = \"magic\"").expect_err("enum");
    assert!(err.contains("magic") || err.contains("variant"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = RawConfig::from_file(Path::new("/nonexistent/maxwell.toml")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/maxwell.toml"));
}

#[test]
fn shipped_example_config_is_valid_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/maxwell.toml");
    let c = RawConfig::from_file(&path)
        .expect("parses")
        .validate()
        .expect("valid");
    let d = parse("").expect("defaults");
    assert_eq!((c.rack.as_str(), c.slot), ("r1", 7));
    assert_eq!(c.http_addr, d.http_addr);
    assert_eq!(c.sensors.interval, d.sensors.interval);
    assert_eq!(c.sensors.default_critical, d.sensors.default_critical);
    assert_eq!(c.power.cap_sources, d.power.cap_sources);
    assert_eq!(c.emulated, d.emulated);
    assert_eq!(c.p2p, d.p2p);
    assert_eq!(c.placement, d.placement);
}

#[test]
fn p2p_and_placement_sections_default_follow_gossip_and_refuse_nonsense() {
    let d = parse("").expect("defaults");
    assert_eq!(d.p2p.listen_addr.to_string(), "0.0.0.0:7948");
    assert_eq!(d.p2p.offer_timeout.as_millis(), 10_000);
    assert!(!d.p2p.mdns, "mDNS is off by default");
    assert_eq!(
        (d.placement.place.choices, d.placement.place.max_offers),
        (2, 3)
    );
    let m = d.placement.moves;
    assert_eq!(
        (
            m.margin_milli,
            m.after_ms,
            m.max_per_minute,
            m.cooldown_ms,
            m.admit_every_ms,
            m.full_load_rise.0
        ),
        (500, 3_000, 6, 120_000, 10_000, 45_000)
    );
    // The core hears the pace its moved guests are taken at.
    assert_eq!(
        d.core(maxwell_core::Admission::NONE).admit_moved_every_ms,
        10_000
    );
    // A test asking the OS for a gossip port gets a p2p port the same way.
    let c = parse("[gossip]\nlisten_addr = \"127.0.0.1:0\"\n").expect("valid");
    assert_eq!(c.p2p.listen_addr.to_string(), "127.0.0.1:0");
    let c = parse("[p2p]\nlisten_addr = \"10.0.0.7:9000\"\n").expect("valid");
    assert_eq!(c.p2p.listen_addr.to_string(), "10.0.0.7:9000");
    for (text, field) in [
        ("[p2p]\nlisten_addr = \"nowhere\"\n", "p2p.listen_addr"),
        ("[p2p]\noffer_timeout_ms = 5\n", "p2p.offer_timeout_ms"),
        ("[placement]\nchoices = 0\n", "placement.choices"),
        ("[placement]\nmax_offers = 99\n", "placement.max_offers"),
        (
            "[placement]\nhot_margin_celsius = -1.0\n",
            "placement.hot_margin_celsius",
        ),
        ("[placement]\nchoice = 2\n", "choice"),
        (
            "[placement]\nmax_moves_per_minute = 61\n",
            "placement.max_moves_per_minute",
        ),
        (
            "[placement]\nmove_margin_milli = 0\n",
            "placement.move_margin_milli",
        ),
        (
            "[placement]\nmove_admit_every_ms = 3600001\n",
            "placement.move_admit_every_ms",
        ),
        (
            "[placement]\nmove_full_load_rise_celsius = -5.0\n",
            "placement.move_full_load_rise_celsius",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.contains(field), "{text}: {err}");
    }
}

#[test]
fn guests_section_defaults_flags_and_errors() {
    let d = parse("").expect("defaults");
    assert_eq!(d.guests.backend, GuestBackendKind::Auto);
    assert_eq!(d.guests.specs_dir, None);
    let c = parse("[guests]\nbackend = \"process\"\nspecs_dir = \"/etc/maxwell/guests\"\n")
        .expect("valid");
    assert_eq!(c.guests.backend, GuestBackendKind::Process);
    assert_eq!(
        c.guests.specs_dir,
        Some(PathBuf::from("/etc/maxwell/guests"))
    );
    let err = parse("[guests]\nbackend = \"none\"\nspecs_dir = \"/x\"\n").expect_err("none + dir");
    assert!(err.contains("guests.specs_dir"), "{err}");
    let err = parse("[guests]\nbackend = \"xen\"\n").expect_err("unknown backend");
    assert!(err.contains("line 2"), "{err}");
    let err = parse("[guests]\nspecs = \"/x\"\n").expect_err("unknown field");
    assert!(err.contains("specs"), "{err}");
}

#[test]
fn set_overrides_any_field_over_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.toml");
    std::fs::write(&file, "rack = \"r1\"\n[pricing]\nbase_milli = 2000\n").expect("write");
    let sets = [
        "pricing.relief_gain=0.9".to_string(),
        "gossip.seeds=[\"10.0.0.1:7946\"]".into(),
        "name=n7".into(),
    ];
    let c = RawConfig::load(Some(&file), &sets, &[])
        .expect("load")
        .validate()
        .expect("valid");
    assert_eq!(c.rack, "r1");
    assert_eq!(c.name, "n7", "a bare word is a string");
    assert_eq!(c.gossip.seeds, vec!["10.0.0.1:7946".to_string()]);
    assert_eq!(c.pricing.config().relief_gain, 0.9);
    assert_eq!(
        c.pricing.config().base_milli,
        2000,
        "the file's value stays"
    );
    let err =
        RawConfig::load(Some(&file), &["pricing.nope=1".to_string()], &[]).expect_err("unknown");
    assert!(err.to_string().contains("nope"), "{err}");
    let err = RawConfig::load(None, &["novalue".to_string()], &[]).expect_err("no =");
    assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    let err =
        RawConfig::load(None, &["rack.x=1".to_string(), "rack=2".to_string()], &[]).map(|_| ());
    assert!(err.is_err());
}

#[test]
fn errors_quote_a_bounded_piece_of_a_huge_value() {
    let huge = "x".repeat(100_000);
    for text in [
        format!("name = \"{huge}\""),
        format!("http_addr = \"{huge}\""),
        format!("[gossip]\nseeds = [\"{huge}\"]"),
    ] {
        let err = RawConfig::from_toml(&text)
            .expect("parses")
            .validate()
            .expect_err("invalid")
            .to_string();
        assert!(err.len() < 300, "{} bytes: {}", err.len(), &err[..200]);
        assert!(err.contains("100000 bytes"), "{err}");
    }
}

#[test]
fn the_api_section_validates_against_the_bind_address() {
    let raw = RawConfig::from_toml("http_addr = \"0.0.0.0:7070\"\n[api]\nauth = \"none\"\n")
        .expect("parses");
    let err = raw.validate().expect_err("refused").to_string();
    assert!(err.contains("api.auth"), "{err}");
    let ok = RawConfig::from_toml("[api]\nauth = \"none\"\nmax_connections = 4\n")
        .expect("parses")
        .validate()
        .expect("loopback may go without auth");
    assert_eq!(ok.api.max_connections, 4);
    let err = RawConfig::from_toml("[guests]\ncpu_fraction = 0\n")
        .expect("parses")
        .validate()
        .expect_err("zero")
        .to_string();
    assert!(err.contains("guests.cpu_fraction"), "{err}");
    let err = RawConfig::from_toml("[guests]\nkernel_dir = \"kernels\"\n")
        .expect("parses")
        .validate()
        .expect_err("relative")
        .to_string();
    assert!(err.contains("absolute"), "{err}");
}

#[test]
fn gossip_timing_that_would_break_the_protocol_is_refused_naming_the_field() {
    let d = parse("").expect("defaults");
    assert_eq!(d.gossip.probe_interval, Duration::from_millis(800));
    assert_eq!(d.gossip.suspicion, Duration::from_millis(1_600));
    for (text, field) in [
        (
            "[gossip]\nprobe_timeout_ms = 500\n",
            "gossip.probe_timeout_ms",
        ),
        ("[gossip]\nsuspicion_ms = 1000\n", "gossip.suspicion_ms"),
        ("[gossip]\nheartbeat_ms = 100000\n", "gossip.report_ttl_ms"),
        ("[gossip]\nphi_threshold = 8.0\n", "phi_threshold"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.contains(field), "{text}: {err}");
    }
}
