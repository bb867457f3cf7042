//! A test seam for the chaos suite (`tests/tests/chaos.rs`): named points in `up` where the
//! process can be made to stop and wait to be killed, so a kill -9 lands exactly there rather
//! than wherever a timer happens to fall. With `DEPLOYER_CHAOS_PAUSE_AT=<point>` set, reaching
//! that point prints `chaos: paused at <point>` to stderr and sleeps until the process is
//! killed. Unset (always, outside the suite) a checkpoint is one environment lookup.
//!
//! Points: `upload` (a package uploaded, the others not yet), `stack` (a stack's change set
//! created, or its CreateStack sent, before it settles), `reconcile` (the app stack deployed,
//! its reconciliation begun).

pub const PAUSE_VAR: &str = "DEPLOYER_CHAOS_PAUSE_AT";

pub fn checkpoint(point: &str) {
    if std::env::var(PAUSE_VAR).ok().as_deref() == Some(point) {
        eprintln!("chaos: paused at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
