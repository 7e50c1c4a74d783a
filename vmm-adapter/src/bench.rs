//! `maxwell bench vmm`: guest create-to-first-exit time, pause and resume
//! latency, cap accuracy and kill time, measured on a backend.

use std::fmt;
use std::time::{Duration, Instant};

use crate::backend::{CapMode, GuestBackend, GuestId};
use crate::error::{Result, VmmError};
use crate::spec::{CpuCap, GuestSpec, PayloadLoop};

/// What to measure and how long.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Guests started (and killed) for create-to-first-exit and kill time.
    pub starts: usize,
    /// Pause/resume cycles.
    pub cycles: usize,
    /// Caps to check.
    pub caps: Vec<f64>,
    /// Measurement window per cap.
    pub cap_window: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            starts: 30,
            cycles: 200,
            caps: vec![0.1, 0.3, 0.7],
            cap_window: Duration::from_secs(3),
        }
    }
}

/// p50/p99 of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
}

impl Stats {
    /// Nearest-rank percentiles; all zero for an empty sample.
    pub fn of(mut v: Vec<Duration>) -> Self {
        v.sort();
        let pick = |q: f64| {
            if v.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        Stats {
            n: v.len(),
            p50: pick(0.50),
            p99: pick(0.99),
        }
    }
}

/// One cap measurement: target and measured share of one core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapSample {
    /// Cap requested.
    pub target: f64,
    /// CPU time / wall time over the window.
    pub measured: f64,
}

/// The benchmark's results.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Backend measured.
    pub backend: crate::backend::BackendName,
    /// How caps were enforced.
    pub cap_mode: Option<CapMode>,
    /// `start` to the guest's first exit to the host.
    pub create_to_first_exit: Stats,
    /// `pause` call latency (every vCPU parked).
    pub pause: Stats,
    /// `resume` call latency.
    pub resume: Stats,
    /// `kill` call latency.
    pub kill: Stats,
    /// Cap accuracy.
    pub caps: Vec<CapSample>,
    /// A paused guest's snapshot, restored into a new VM on this host and
    /// running again (from `snapshot` to its counter moving on), and the
    /// memory carried; `None` where the backend has no snapshots.
    pub snapshot_restore: Option<(Stats, usize)>,
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = self.cap_mode.map_or("?".into(), |m| format!("{m:?}"));
        writeln!(
            f,
            "maxwell bench vmm — backend {}, caps {mode}",
            self.backend
        )?;
        writeln!(f, "{:<24} {:>6} {:>12} {:>12}", "metric", "n", "p50", "p99")?;
        for (name, s) in [
            ("create -> first exit", self.create_to_first_exit),
            ("pause", self.pause),
            ("resume", self.resume),
            ("kill", self.kill),
        ] {
            writeln!(
                f,
                "{name:<24} {:>6} {:>12} {:>12}",
                s.n,
                ms(s.p50),
                ms(s.p99)
            )?;
        }
        writeln!(
            f,
            "{:<24} {:>12} {:>12} {:>8}",
            "cap accuracy", "target", "measured", "error"
        )?;
        for c in &self.caps {
            writeln!(
                f,
                "{:<24} {:>11.1}% {:>11.1}% {:>+7.1}pt",
                "",
                c.target * 100.0,
                c.measured * 100.0,
                (c.measured - c.target) * 100.0
            )?;
        }
        match &self.snapshot_restore {
            Some((s, bytes)) => writeln!(
                f,
                "{:<24} {:>6} {:>12} {:>12}  ({bytes} bytes of memory carried; same host, no network)",
                "snapshot -> restored",
                s.n,
                ms(s.p50),
                ms(s.p99)
            )?,
            None => writeln!(f, "{:<24} not supported by this backend", "snapshot -> restored")?,
        }
        Ok(())
    }
}

fn spec(name: &str) -> Result<GuestSpec> {
    GuestSpec::workload(name, 1, 4, PayloadLoop::Hash)
}

fn wait_first_exit(b: &dyn GuestBackend, id: GuestId) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(us) = b.info(id)?.first_exit_us {
            return Ok(Duration::from_micros(us));
        }
        if Instant::now() > deadline {
            return Err(VmmError::Timeout {
                id,
                op: "first exit",
                waited_ms: 5000,
            });
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn starts(b: &dyn GuestBackend, n: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut first, mut kill) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let id = b.start(&spec("bench-start")?)?;
        let r = wait_first_exit(b, id);
        let t = Instant::now();
        b.kill(id)?;
        kill.push(t.elapsed());
        first.push(r?);
    }
    Ok((first, kill))
}

fn cycles(b: &dyn GuestBackend, n: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let id = b.start(&spec("bench-pause")?)?;
    let (mut pause, mut resume) = (Vec::new(), Vec::new());
    let r = (|| {
        for _ in 0..n {
            std::thread::sleep(Duration::from_millis(1));
            let t = Instant::now();
            b.pause(id)?;
            pause.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(1));
            let t = Instant::now();
            b.resume(id)?;
            resume.push(t.elapsed());
        }
        Ok(())
    })();
    b.kill(id)?;
    r.map(|()| (pause, resume))
}

/// Share of one core used by guest `id` over `window`.
pub fn measure_share(b: &dyn GuestBackend, id: GuestId, window: Duration) -> Result<f64> {
    let (c0, t0) = (b.cpu_time(id)?, Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (b.cpu_time(id)?, Instant::now());
    Ok((c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64())
}

fn cap_accuracy(b: &dyn GuestBackend, target: f64, window: Duration) -> Result<CapSample> {
    let id = b.start(&spec("bench-cap")?.with_cap(CpuCap::new(target)?))?;
    std::thread::sleep(Duration::from_millis(200));
    let r = measure_share(b, id, window);
    b.kill(id)?;
    Ok(CapSample {
        target,
        measured: r?,
    })
}

/// `n` times: a 2-vCPU counting guest paused, captured, killed, restored
/// into a new VM and resumed; the time from the snapshot call until its
/// counter moves past where it stopped, and the bytes carried.
fn snapshots(b: &dyn GuestBackend, n: usize) -> Result<Option<(Vec<Duration>, usize)>> {
    let spec = GuestSpec::workload("bench-snap", 2, 4, PayloadLoop::Count)?;
    let (mut times, mut bytes) = (Vec::new(), 0);
    for _ in 0..n {
        let id = b.start(&spec)?;
        let moved = |id, above| {
            let t0 = Instant::now();
            while b.progress(id).unwrap_or(0) <= above {
                if t0.elapsed() > Duration::from_secs(5) {
                    return false;
                }
                std::thread::yield_now();
            }
            true
        };
        let ran = moved(id, 0);
        b.pause(id)?;
        let at = b.progress(id)?;
        let t0 = Instant::now();
        let snap = match b.snapshot(id) {
            Ok(s) => s,
            Err(VmmError::Unsupported { .. }) => {
                b.kill(id)?;
                return Ok(None);
            }
            Err(e) => {
                b.kill(id)?;
                return Err(e);
            }
        };
        b.kill(id)?;
        let to = b.restore_held(&spec, &snap)?;
        b.resume(to)?;
        let on = moved(to, at);
        let took = t0.elapsed();
        b.kill(to)?;
        if ran && on {
            times.push(took);
        }
        bytes = snap.memory_carried();
    }
    Ok(Some((times, bytes)))
}

/// Run the benchmark on `backend`. Every guest it starts is killed before
/// it returns, on success or error.
pub fn run_bench(backend: &dyn GuestBackend, opts: &BenchOptions) -> Result<BenchReport> {
    let (first, kill) = starts(backend, opts.starts)?;
    let (pause, resume) = cycles(backend, opts.cycles)?;
    let caps = opts
        .caps
        .iter()
        .map(|c| cap_accuracy(backend, *c, opts.cap_window))
        .collect::<Result<Vec<_>>>()?;
    let cap_mode = {
        let id = backend.start(&spec("bench-mode")?)?;
        let m = backend.info(id).map(|i| i.cap_mode);
        backend.kill(id)?;
        m.ok()
    };
    let snapshot_restore = snapshots(backend, opts.cycles.min(50))?.map(|(t, b)| (Stats::of(t), b));
    Ok(BenchReport {
        snapshot_restore,
        backend: backend.name(),
        cap_mode,
        create_to_first_exit: Stats::of(first),
        pause: Stats::of(pause),
        resume: Stats::of(resume),
        kill: Stats::of(kill),
        caps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v = (1..=100).map(Duration::from_millis).collect();
        let s = Stats::of(v);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(Stats::of(Vec::new()).p99, Duration::ZERO);
    }
}
