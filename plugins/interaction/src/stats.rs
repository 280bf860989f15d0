//! Step latency statistics: a fixed window of the most recent steps (memory stays flat), with
//! percentiles on demand, and a count of steps that missed the micro-turn budget.

use std::time::Duration;

/// Steps kept for the percentiles.
pub const WINDOW: usize = 4096;

#[derive(Debug, Clone)]
pub struct LatencyStats {
    recent: Vec<u64>,
    next: usize,
    count: u64,
    over_budget: u64,
    max: u64,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            recent: Vec::with_capacity(WINDOW),
            next: 0,
            count: 0,
            over_budget: 0,
            max: 0,
        }
    }
}

impl LatencyStats {
    /// Records one step; returns whether it missed `budget`.
    pub fn record(&mut self, latency: Duration, budget: Duration) -> bool {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if self.recent.len() < WINDOW {
            self.recent.push(ns);
        } else {
            self.recent[self.next] = ns;
        }
        self.next = (self.next + 1) % WINDOW;
        self.count += 1;
        self.max = self.max.max(ns);
        let over = latency > budget;
        if over {
            self.over_budget += 1;
        }
        over
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn over_budget(&self) -> u64 {
        self.over_budget
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The `q` quantile (0..=1) of the recent window, ns (nearest rank); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        quantile(&self.recent, q)
    }
}

/// Nearest-rank quantile of `values` (ns); 0 when empty.
pub fn quantile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_budget() {
        let mut stats = LatencyStats::default();
        let budget = Duration::from_millis(200);
        for ms in 1..=100u64 {
            stats.record(Duration::from_millis(ms), budget);
        }
        assert!(stats.record(Duration::from_millis(250), budget));
        assert_eq!(stats.count(), 101);
        assert_eq!(stats.over_budget(), 1);
        assert_eq!(stats.quantile(0.5), 51_000_000);
        assert_eq!(stats.quantile(0.99), 100_000_000);
        assert_eq!(stats.max(), 250_000_000);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
