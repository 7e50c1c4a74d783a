//! User-space duty-cycle capping, the fallback where no cgroup cpu
//! controller is writable: a thread per guest that lets the guest run for
//! `cap × period` and holds it for the rest of each period. It is open loop
//! and sags under host load (measured 29–36 % for a 30 % cap), so cgroups
//! are always preferred.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::spec::CpuCap;

/// Duty-cycle period.
pub const DUTY_PERIOD: Duration = Duration::from_millis(20);

/// Run and hold times for one period.
pub(crate) fn split(cap: CpuCap, period: Duration) -> (Duration, Duration) {
    let on = period.mul_f64(cap.fraction());
    (on, period.saturating_sub(on))
}

#[derive(Debug)]
struct Ctl {
    cap: CpuCap,
    stop: bool,
}

/// A running duty cycle; dropping it stops the thread and releases the guest.
#[derive(Debug)]
pub(crate) struct DutyCycle {
    ctl: Arc<(Mutex<Ctl>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// Called with `true` to hold the guest, `false` to release it.
pub(crate) type HoldFn = Box<dyn Fn(bool) + Send + 'static>;

impl DutyCycle {
    /// Start cycling `hold` at `cap`.
    pub(crate) fn spawn(cap: CpuCap, hold: HoldFn) -> std::io::Result<Self> {
        let ctl = Arc::new((Mutex::new(Ctl { cap, stop: false }), Condvar::new()));
        let c = Arc::clone(&ctl);
        let thread = std::thread::Builder::new()
            .name("maxwell-duty".into())
            .spawn(move || cycle(&c, &hold))?;
        Ok(DutyCycle {
            ctl,
            thread: Some(thread),
        })
    }

    /// Change the cap; takes effect next period.
    pub(crate) fn set_cap(&self, cap: CpuCap) {
        let (m, cv) = &*self.ctl;
        maxwell_types::sync::lock(m).cap = cap;
        cv.notify_all();
    }
}

/// Sleep up to `d` unless stopped; returns false when stopped.
fn nap(ctl: &(Mutex<Ctl>, Condvar), d: Duration) -> Option<CpuCap> {
    let (m, cv) = ctl;
    let g = m.lock().ok()?;
    let (g, _) = cv.wait_timeout_while(g, d, |c| !c.stop).ok()?;
    (!g.stop).then_some(g.cap)
}

fn cycle(ctl: &(Mutex<Ctl>, Condvar), hold: &HoldFn) {
    let mut cap = match ctl.0.lock() {
        Ok(g) => g.cap,
        Err(_) => return,
    };
    loop {
        let (on, off) = split(cap, DUTY_PERIOD);
        match nap(ctl, on) {
            None => break,
            Some(c) if off.is_zero() => {
                cap = c;
                continue;
            }
            Some(_) => {}
        }
        hold(true);
        let next = nap(ctl, off);
        hold(false);
        match next {
            Some(c) => cap = c,
            None => break,
        }
    }
    hold(false);
}

impl Drop for DutyCycle {
    fn drop(&mut self) {
        let (m, cv) = &*self.ctl;
        maxwell_types::sync::lock(m).stop = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_adds_up() {
        let (on, off) = split(CpuCap::new(0.3).expect("cap"), Duration::from_millis(20));
        assert_eq!(on, Duration::from_millis(6));
        assert_eq!(off, Duration::from_millis(14));
        let (on, off) = split(CpuCap::FULL, Duration::from_millis(20));
        assert_eq!((on, off), (Duration::from_millis(20), Duration::ZERO));
    }
}
