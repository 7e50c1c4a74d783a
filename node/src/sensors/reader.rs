//! The sensor hub on a thread of its own. A read that never returns (a hung
//! driver, a stuck mount) stalls that thread only: the agent's loop, gossip,
//! the API and shutdown go on, and `/healthz` turns unhealthy as the last
//! snapshot ages. The thread is never joined, so it cannot hold up exit.

use super::hub::SensorHub;
use super::Snapshot;
use crate::sensors::config::EmulatedParams;
use std::time::Duration;

/// Past this a read counts as stuck: three sensor periods, and at least 5 s
/// (a slow SMBus chip is not a stuck one). Bounds the first read at start
/// and turns `/healthz` unhealthy later.
pub fn stuck_after(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(5))
}

/// Work for the sensor thread, done in order.
#[derive(Debug)]
enum Job {
    Read { now: Duration, wall_ms: u64 },
    Emulated(EmulatedParams),
    ExcludeChips(Vec<String>),
}

/// What the sensor thread reads: the [`SensorHub`], or a test's stand-in.
pub trait Source: Send + 'static {
    fn read(&mut self, now: Duration, wall_ms: u64) -> Snapshot;
    fn set_emulated(&mut self, params: EmulatedParams);
    fn set_exclude_chips(&mut self, chips: Vec<String>);
}

impl Source for SensorHub {
    fn read(&mut self, now: Duration, wall_ms: u64) -> Snapshot {
        SensorHub::read(self, now, wall_ms)
    }
    fn set_emulated(&mut self, params: EmulatedParams) {
        self.set_emulated_params(params);
    }
    fn set_exclude_chips(&mut self, chips: Vec<String>) {
        SensorHub::set_exclude_chips(self, chips);
    }
}

/// The agent's handle on the sensor thread.
#[derive(Debug)]
pub struct Reader {
    jobs: std::sync::mpsc::Sender<Job>,
    snapshots: tokio::sync::mpsc::Receiver<Snapshot>,
    pending: bool,
}

impl Reader {
    /// Builds the source on a new thread, `sensor-reader`, and reads it once
    /// there. Building and the first read must finish within `deadline`
    /// (a hung driver at start is an error, not a hang); returns the handle
    /// and the first snapshot.
    pub fn start<S: Source>(
        make: impl FnOnce() -> Result<S, String> + Send + 'static,
        deadline: Duration,
    ) -> Result<(Self, Snapshot), String> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
        let (snap_tx, snapshots) = tokio::sync::mpsc::channel(1);
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sensor-reader".into())
            .spawn(move || {
                let mut hub = match make() {
                    Ok(hub) => hub,
                    Err(e) => {
                        let _ = first_tx.send(Err(e));
                        return;
                    }
                };
                let _ = first_tx.send(Ok(hub.read(Duration::ZERO, crate::clock::unix_ms())));
                for job in job_rx {
                    match job {
                        Job::Read { now, wall_ms } => {
                            if snap_tx.blocking_send(hub.read(now, wall_ms)).is_err() {
                                return;
                            }
                        }
                        Job::Emulated(p) => hub.set_emulated(p),
                        Job::ExcludeChips(chips) => hub.set_exclude_chips(chips),
                    }
                }
            })
            .map_err(|e| format!("cannot start the sensor thread: {e}"))?;
        let first = match first_rx.recv_timeout(deadline) {
            Ok(first) => first?,
            Err(_) => {
                return Err(format!(
                    "the first sensor read did not return within {} s (a hung driver?); \
                     exclude the chip or fix the sensor",
                    deadline.as_secs()
                ))
            }
        };
        let reader = Self {
            jobs,
            snapshots,
            pending: false,
        };
        Ok((reader, first))
    }

    /// Asks for a read; true when it was queued. While one is still running
    /// no other is queued (the node core, which asks, reports a stuck one).
    pub fn request(&mut self, now: Duration, wall_ms: u64) -> bool {
        if self.pending {
            return false;
        }
        // A send fails only if the thread died; the snapshot then never
        // comes and the health check reports it.
        let _ = self.jobs.send(Job::Read { now, wall_ms });
        self.pending = true;
        true
    }

    /// The next finished read (cancel-safe, for `select!`).
    pub async fn next(&mut self) -> Option<Snapshot> {
        let snap = self.snapshots.recv().await;
        self.pending = false;
        snap
    }

    /// New emulated parameters, in force from the next read.
    pub fn set_emulated(&self, params: EmulatedParams) {
        let _ = self.jobs.send(Job::Emulated(params));
    }

    /// New chips to leave out, in force from the next read.
    pub fn set_exclude_chips(&self, chips: Vec<String>) {
        let _ = self.jobs.send(Job::ExcludeChips(chips));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Reads once, then blocks until released, like a hung driver.
    struct Hangs {
        first: Option<Snapshot>,
        release: mpsc::Receiver<()>,
    }

    impl Source for Hangs {
        fn read(&mut self, _: Duration, _: u64) -> Snapshot {
            if let Some(s) = self.first.take() {
                return s;
            }
            // Blocks until the test drops its end, then reads nothing new.
            let _ = self.release.recv();
            loop {
                std::thread::park();
            }
        }
        fn set_emulated(&mut self, _: EmulatedParams) {}
        fn set_exclude_chips(&mut self, _: Vec<String>) {}
    }

    fn emulated_hub() -> SensorHub {
        use crate::sensors::config::{RawPower, RawSensors, SensorMode};
        let mut sensors = RawSensors::default().validate().expect("defaults");
        sensors.mode = SensorMode::Emulated;
        let power = RawPower::default().validate().expect("defaults");
        SensorHub::new(&sensors, &power, EmulatedParams::default()).expect("hub")
    }

    #[tokio::test]
    async fn a_read_that_never_returns_blocks_only_its_thread() {
        let (release, rx) = mpsc::channel();
        let first = emulated_hub().read(Duration::ZERO, 1);
        let (mut reader, _) = Reader::start(
            move || {
                Ok(Hangs {
                    first: Some(first),
                    release: rx,
                })
            },
            Duration::from_secs(5),
        )
        .expect("start");
        // The first read was taken at start; the next one hangs.
        assert!(reader.request(Duration::ZERO, 2), "request");
        let waited = tokio::time::timeout(Duration::from_millis(300), reader.next()).await;
        assert!(waited.is_err(), "no snapshot from a hung read");
        assert!(
            !reader.request(Duration::ZERO, 3),
            "no read queued behind it"
        );
        // Dropping the handle does not wait for the thread.
        drop(reader);
        drop(release);
    }

    #[test]
    fn a_hung_first_read_is_an_error_at_start_not_a_hang() {
        let (_release, rx) = mpsc::channel();
        let err = Reader::start(
            move || {
                Ok(Hangs {
                    first: None,
                    release: rx,
                })
            },
            Duration::from_millis(200),
        )
        .expect_err("hung");
        assert!(err.contains("did not return"), "{err}");
    }
}
