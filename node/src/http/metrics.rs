//! `GET /metrics`: Prometheus text format through `prometheus-client`.
//!
//! Sensor values use node_exporter's names (`node_hwmon_temp_celsius`,
//! `node_hwmon_power_average_watt`, `node_rapl_package_joules_total`, ...)
//! so existing dashboards work; maxwell's own figures are `maxwell_*`. A
//! registry is built per scrape from the latest snapshot, so a sensor that
//! disappears also disappears from the output.

use crate::http::state::AppState;
use crate::sensors::Snapshot;
use maxwell_gossip::swim::Refusal;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;
type FloatFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// Renders the metrics text for the current state.
pub fn render(state: &AppState) -> String {
    let snap = state.snapshot();
    let mut reg = Registry::default();
    hwmon_metrics(&mut reg, &snap);
    summary_metrics(&mut reg, state, &snap);
    reg.register(
        "maxwell_sensor_read_errors",
        "Sensor files skipped because they were missing, unreadable, faulty or garbage",
        state.counters.sensor_read_errors.clone(),
    );
    reg.register(
        "maxwell_sensor_reads",
        "Sensor periods completed",
        state.counters.sensor_reads.clone(),
    );
    reg.register(
        "maxwell_api_refused",
        "API requests refused before any handler ran, by reason",
        state.counters.api_refused.clone(),
    );
    reg.register(
        "maxwell_api_connections_refused",
        "API connections closed at accept: api.max_connections open, each with a request in progress",
        state.counters.api_connections.refused.clone(),
    );
    reg.register(
        "maxwell_api_connections_evicted",
        "Idle API connections closed to make room for a new one at api.max_connections",
        state.counters.api_connections.evicted.clone(),
    );
    gossip_metrics(&mut reg, state);
    p2p_metrics(&mut reg, state);
    price_metrics(&mut reg, state);
    guest_metrics(&mut reg, state);
    if let Some(view) = state.market() {
        crate::http::market::metrics(&mut reg, &view);
        let ns = state
            .guests
            .market_cpu_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        gauge(
            "maxwell_market_cpu_seconds",
            "CPU time the agent spent on the market (metering, ticks, the ledger, carrying out its actions), counter",
            Some(ns as f64 / 1e9),
            &mut reg,
        );
    }
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        return "# encoding failed\n".into();
    }
    out
}

pub(crate) fn family(reg: &mut Registry, name: &str, help: &str) -> FloatFamily {
    let f = FloatFamily::default();
    reg.register(name, help, f.clone());
    f
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

pub(crate) fn set(f: &FloatFamily, l: Labels, v: f64) {
    f.get_or_create(&l).set(v);
}

/// An unlabelled gauge; an unknown value is left out rather than faked.
pub(crate) fn gauge(name: &str, help: &str, v: Option<f64>, reg: &mut Registry) {
    if let Some(v) = v {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(v);
        reg.register(name, help, gauge);
    }
}

/// Sets the series only when the value is known: unknown is absent, not zero.
fn set_opt(f: &FloatFamily, l: &Labels, v: Option<f64>) {
    if let Some(v) = v {
        f.get_or_create(l).set(v);
    }
}

fn hwmon_metrics(reg: &mut Registry, snap: &Snapshot) {
    let temp = family(
        reg,
        "node_hwmon_temp_celsius",
        "Hardware monitor for temperature (input)",
    );
    let tmax = family(
        reg,
        "node_hwmon_temp_max_celsius",
        "Hardware monitor for temperature (max)",
    );
    let tcrit = family(
        reg,
        "node_hwmon_temp_crit_celsius",
        "Hardware monitor for temperature (crit)",
    );
    let hyst = family(
        reg,
        "node_hwmon_temp_crit_hyst_celsius",
        "Hardware monitor for temperature (crit_hyst)",
    );
    let label = family(
        reg,
        "node_hwmon_sensor_label",
        "Label for given chip and sensor",
    );
    let chip_names = family(
        reg,
        "node_hwmon_chip_names",
        "Annotation metric for human-readable chip names",
    );
    let pin = family(
        reg,
        "node_hwmon_power_input_watt",
        "Hardware monitor for power usage in watts (input)",
    );
    let pavg = family(
        reg,
        "node_hwmon_power_average_watt",
        "Hardware monitor for power usage in watts (average)",
    );
    let pcap = family(
        reg,
        "node_hwmon_power_cap_watt",
        "Hardware monitor for power usage in watts (cap)",
    );
    let energy = family(
        reg,
        "node_hwmon_energy_joule_total",
        "Hardware monitor for joules used so far (input)",
    );
    let rapl = family(
        reg,
        "node_rapl_package_joules_total",
        "Current RAPL package value in joules",
    );
    let rapl_w = family(
        reg,
        "maxwell_rapl_power_watts",
        "Mean RAPL zone power since the previous reading",
    );
    let rapl_lim = family(
        reg,
        "maxwell_rapl_power_limit_watts",
        "RAPL constraint_0 power limit",
    );
    let h = &snap.hwmon;
    for t in &h.temperatures {
        let l = labels(&[("chip", &t.device), ("sensor", &t.sensor)]);
        set(&temp, l.clone(), t.input_millicelsius.as_celsius());
        set_opt(&tmax, &l, t.max_millicelsius.map(|v| v.as_celsius()));
        set_opt(&tcrit, &l, t.crit_millicelsius.map(|v| v.as_celsius()));
        set_opt(&hyst, &l, t.crit_hyst_millicelsius.map(|v| v.as_celsius()));
        if let Some(text) = &t.label {
            set(
                &label,
                labels(&[("chip", &t.device), ("sensor", &t.sensor), ("label", text)]),
                1.0,
            );
        }
        set(
            &chip_names,
            labels(&[("chip", &t.device), ("chip_name", &t.chip)]),
            1.0,
        );
    }
    for p in &h.power {
        let l = labels(&[("chip", &p.device), ("sensor", &p.sensor)]);
        set_opt(&pin, &l, p.input_microwatts.map(|v| v.as_watts()));
        set_opt(&pavg, &l, p.average_microwatts.map(|v| v.as_watts()));
        set_opt(&pcap, &l, p.cap_microwatts.map(|v| v.as_watts()));
        set(
            &chip_names,
            labels(&[("chip", &p.device), ("chip_name", &p.chip)]),
            1.0,
        );
    }
    for e in &h.energy {
        let l = labels(&[("chip", &e.device), ("sensor", &e.sensor)]);
        set(&energy, l, e.input_microjoules.as_joules());
    }
    for (i, z) in snap.rapl.iter().enumerate() {
        let l = labels(&[
            ("index", &i.to_string()),
            ("path", &z.zone),
            ("rapl_zone", &z.name),
        ]);
        set(&rapl, l.clone(), z.energy_microjoules.as_joules());
        set_opt(&rapl_w, &l, z.power_microwatts.map(|v| v.as_watts()));
        set_opt(&rapl_lim, &l, z.limit_microwatts.map(|v| v.as_watts()));
    }
}

fn summary_metrics(reg: &mut Registry, state: &AppState, snap: &Snapshot) {
    let n = &state.node;
    let info = family(
        reg,
        "maxwell_node_info",
        "This node's identity and place (value 1)",
    );
    let slot = n.slot.to_string();
    let id = n.id.to_string();
    let source = snap.source.as_str();
    set(
        &info,
        labels(&[
            ("id", &id),
            ("name", &n.name),
            ("rack", &n.rack),
            ("slot", &slot),
            ("version", &n.version),
            ("sensor_source", source),
        ]),
        1.0,
    );
    let s = &snap.summary;
    gauge(
        "maxwell_sensors_emulated",
        "1 when readings come from the emulated model, not hardware",
        Some(f64::from(u8::from(snap.emulated))),
        reg,
    );
    gauge(
        "maxwell_hottest_temp_celsius",
        "Hottest relevant temperature (closest to its limit)",
        s.hottest.as_ref().map(|h| h.millicelsius.as_celsius()),
        reg,
    );
    gauge(
        "maxwell_hottest_temp_crit_celsius",
        "Critical limit of the hottest temperature",
        s.hottest
            .as_ref()
            .map(|h| h.critical_millicelsius.as_celsius()),
        reg,
    );
    gauge(
        "maxwell_power_draw_watts",
        "Host power draw",
        s.power_draw.as_ref().map(|p| p.microwatts.as_watts()),
        reg,
    );
    gauge(
        "maxwell_power_cap_watts",
        "Host power cap",
        s.power_cap.as_ref().map(|p| p.microwatts.as_watts()),
        reg,
    );
    gauge(
        "maxwell_power_headroom_watts",
        "Power cap minus draw",
        s.headroom_microwatts.map(|p| p.as_watts()),
        reg,
    );
    gauge(
        "maxwell_cpu_utilisation_ratio",
        "Busy fraction of all CPUs",
        Some(snap.cpu.utilisation),
        reg,
    );
    gauge(
        "maxwell_memory_used_bytes",
        "Memory in use",
        Some(snap.cpu.memory_used_bytes as f64),
        reg,
    );
    gauge(
        "maxwell_sensor_problems",
        "Sensor channels skipped in the latest read",
        Some(snap.problems.len() as f64),
        reg,
    );
    gauge(
        "maxwell_uptime_seconds",
        "Seconds since the agent started",
        Some(state.started.elapsed().as_secs_f64()),
        reg,
    );
}

/// Per-guest series carry only the guest id, so their number is the number
/// of live guests; a killed guest's series disappear with it.
fn guest_metrics(reg: &mut Registry, state: &AppState) {
    let guests = state.guests.list_blocking();
    let admitted = state.admitted();
    gauge(
        "maxwell_guests_admitted_vcpus",
        "vCPUs of the guests admitted and not killed (starting ones too), as admission counts them",
        Some(admitted.vcpus as f64),
        reg,
    );
    gauge(
        "maxwell_guests_admitted_memory_mib",
        "Memory of the guests admitted and not killed (starting ones too), MiB, as admission counts it",
        Some(admitted.memory_mib as f64),
        reg,
    );
    let by_state = family(reg, "maxwell_guests", "Live guests on this host, by state");
    for s in ["running", "paused", "exited"] {
        let n = guests.iter().filter(|g| g.state.as_str() == s).count();
        set(&by_state, labels(&[("state", s)]), n as f64);
    }
    let cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
    reg.register(
        "maxwell_guest_cpu_seconds",
        "CPU time used by the guest's vCPUs",
        cpu.clone(),
    );
    let progress = family(
        reg,
        "maxwell_guest_progress",
        "Guest progress: work blocks done (workload) or console bytes (linux)",
    );
    let cap = family(
        reg,
        "maxwell_guest_cap_ratio",
        "Guest CPU cap per vCPU, fraction of one core",
    );
    for g in &guests {
        let l = labels(&[("guest", &g.id.to_string())]);
        cpu.get_or_create(&l).inc_by(g.cpu_time_ns as f64 / 1e9);
        set(&progress, l.clone(), g.progress as f64);
        set(&cap, l, g.cap.fraction());
    }
}

pub(crate) fn counter_family(
    reg: &mut Registry,
    name: &str,
    help: &str,
    values: &[(&str, &str, u64)],
) {
    let f = Family::<Labels, Counter>::default();
    for (key, value, n) in values {
        f.get_or_create(&labels(&[(key, value)])).inc_by(*n);
    }
    reg.register(name, help, f);
}

fn gossip_metrics(reg: &mut Registry, state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;
    let members = state.members();
    let by_status = family(
        reg,
        "maxwell_members",
        "Members with a verified record, by status (self included)",
    );
    for status in ["alive", "dead", "left"] {
        let n = members
            .members
            .iter()
            .filter(|m| m.status.as_str() == status)
            .count();
        set(&by_status, labels(&[("status", status)]), n as f64);
    }
    let unverified = Gauge::<f64, AtomicU64>::default();
    unverified.set(members.unverified_peers as f64);
    reg.register(
        "maxwell_gossip_unverified_peers",
        "Gossip peers without a verified record",
        unverified,
    );
    let c = state.verify_counters();
    let accepted: Vec<(&str, &str, u64)> = maxwell_gossip::RecordKind::ALL
        .iter()
        .map(|k| ("kind", k.label(), c.accepted(*k)))
        .collect();
    counter_family(
        reg,
        "maxwell_gossip_records_accepted",
        "Gossiped records accepted, by kind",
        &accepted,
    );
    let rejections: Vec<(&str, &str, u64)> = c
        .rejections()
        .iter()
        .map(|(l, n)| ("reason", *l, *n))
        .collect();
    counter_family(
        reg,
        "maxwell_gossip_records_rejected",
        "Gossiped records refused, by reason",
        &rejections,
    );
    let s = &state.gossip_stats;
    counter_family(
        reg,
        "maxwell_gossip_datagrams",
        "Gossip datagrams, by direction",
        &[
            ("direction", "in", s.datagrams_in.load(Relaxed)),
            ("direction", "out", s.datagrams_out.load(Relaxed)),
        ],
    );
    counter_family(
        reg,
        "maxwell_gossip_bytes",
        "Gossip payload bytes, by direction",
        &[
            ("direction", "in", s.bytes_in.load(Relaxed)),
            ("direction", "out", s.bytes_out.load(Relaxed)),
        ],
    );
    let p = state.protocol_counters();
    let refused: Vec<(&str, &str, u64)> = Refusal::ALL
        .iter()
        .map(|r| ("reason", r.label(), p.refused.get(r).copied().unwrap_or(0)))
        .collect();
    counter_family(
        reg,
        "maxwell_gossip_refused",
        "Gossip datagrams and records refused before anything was believed, by reason",
        &refused,
    );
    let errors = Counter::<u64>::default();
    errors.inc_by(s.send_errors.load(Relaxed));
    reg.register(
        "maxwell_gossip_send_errors",
        "Gossip sends that failed (dropped; gossip goes on)",
        errors,
    );
}

fn p2p_metrics(reg: &mut Registry, state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(p) = state.p2p.get() else { return };
    let c = &p.counters;
    counter_family(
        reg,
        "maxwell_p2p_refused",
        "p2p connections refused, by reason: not_a_member (the peer's key is not a counting member's), impostor (a member's address, another key)",
        &[
            ("reason", "not_a_member", c.denied.load(Relaxed)),
            ("reason", "impostor", c.impostors.load(Relaxed)),
        ],
    );
    let sent = Counter::<u64>::default();
    sent.inc_by(c.offers_sent.load(Relaxed));
    reg.register(
        "maxwell_p2p_offers_sent",
        "Placement offers this node sent",
        sent,
    );
    counter_family(
        reg,
        "maxwell_p2p_offers_received",
        "Placement offers received, by outcome: started (held), refused, and of those started, killed as undelivered (the answer could not be sent) or expired (no confirmation within the hold)",
        &[
            ("outcome", "started", c.offers_started.load(Relaxed)),
            ("outcome", "refused", c.offers_refused.load(Relaxed)),
            ("outcome", "undelivered", c.undelivered.load(Relaxed)),
            ("outcome", "expired", c.expired.load(Relaxed)),
        ],
    );
    counter_family(
        reg,
        "maxwell_moves",
        "Guest moves, by direction and outcome: out/moved (it runs on the target, with its wallet), out/aborted (it runs on here), in/committed (a moved guest runs here)",
        &[
            ("outcome", "out_moved", c.moves_out.load(Relaxed)),
            ("outcome", "out_aborted", c.moves_aborted.load(Relaxed)),
            ("outcome", "in_committed", c.moves_in.load(Relaxed)),
        ],
    );
}

fn price_metrics(reg: &mut Registry, state: &AppState) {
    let Some(q) = state.quote() else { return };
    let milli = |v: i64| v as f64 / 1000.0;
    let price = family(
        reg,
        "maxwell_price",
        "This node's compute price (units), and the target it filters towards",
    );
    set(
        &price,
        labels(&[("kind", "published")]),
        q.price_milli as f64 / 1000.0,
    );
    set(
        &price,
        labels(&[("kind", "target")]),
        q.target_milli as f64 / 1000.0,
    );
    let terms = family(reg, "maxwell_price_term", "Terms of the target price (units): base + thermal + headroom + rack_power + staleness_penalty - neighbour_relief");
    let t = &q.terms;
    for (name, v) in [
        ("base", t.base),
        ("thermal", t.thermal),
        ("headroom", t.headroom),
        ("neighbour_relief", t.neighbour_relief),
        ("rack_power", t.rack_power),
        ("staleness_penalty", t.staleness_penalty),
    ] {
        set(&terms, labels(&[("term", name)]), milli(v));
    }
    let peers = family(
        reg,
        "maxwell_price_peers",
        "Peers the price law read, by freshness",
    );
    set(
        &peers,
        labels(&[("freshness", "fresh")]),
        q.fresh_peers as f64,
    );
    set(
        &peers,
        labels(&[("freshness", "stale")]),
        q.stale_peers as f64,
    );
}
