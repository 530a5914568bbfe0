//! The optional differential-privacy mode of public views (`docs/adr/012-differential-privacy-public-views.md`).
//!
//! A project opts in with `optel projects dp NAME --epsilon E --daily-budget B`. Each fresh
//! answer of a public view then adds noise from the **two-sided geometric mechanism** (the
//! discrete Laplace distribution, `P(z) ∝ exp(-ε·|z|/Δ)`) to every count it shows, where `Δ`
//! is the view's sensitivity: how many of its numbers one event can move by one
//! ([`Private::SENSITIVITY`]). The sampler is exact (Canonne, Kamath, Steinke 2020, algorithms
//! 1 and 2): it draws only uniform integers from a ChaCha12 generator seeded by the OS, and never
//! rounds a floating-point number, so it has none of the floating-point leaks of textbook
//! Laplace samplers (Mironov 2012).
//!
//! Noise is added after suppression: the rows and the population a public view counts are
//! chosen on exact numbers as without DP (`public`), then each shown number gets its own noise.
//! Noise never touches a hidden group, so it cannot bring one back; the order of the rows is
//! re-derived from the noisy numbers.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{
    Commands, Errors, Features, Listed, NamedRow, Overview, Platforms, Timeseries, Versions,
};

/// Smallest ε per answer [`DpSettings::new`] accepts.
pub const MIN_EPSILON: f64 = 0.01;
/// Largest ε per answer [`DpSettings::new`] accepts (beyond it the noise is mostly 0).
pub const MAX_EPSILON: f64 = 10.0;
/// Largest daily budget [`DpSettings::new`] accepts.
pub const MAX_DAILY_BUDGET: f64 = 1000.0;
/// ε is kept in thousandths, so that the sampler works on exact integers.
const EPSILON_SCALE: u64 = 1000;

/// The differential-privacy settings of a project's public views.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpSettings {
    /// Privacy loss ε of one fresh answer of one view (a multiple of 0.001, in
    /// `[MIN_EPSILON, MAX_EPSILON]`).
    pub epsilon: f64,
    /// Total ε the project's public views may spend per UTC day (at least `epsilon`, at most
    /// [`MAX_DAILY_BUDGET`]); once spent, views answer from the day's cached answers.
    pub daily_budget: f64,
}

impl DpSettings {
    /// Validated settings; ε is rounded to thousandths.
    ///
    /// # Errors
    /// A message naming the bad value and the accepted range.
    pub fn new(epsilon: f64, daily_budget: f64) -> Result<Self, String> {
        if !(MIN_EPSILON..=MAX_EPSILON).contains(&epsilon) {
            return Err(format!(
                "epsilon {epsilon} is out of range: use a value from {MIN_EPSILON} to {MAX_EPSILON}"
            ));
        }
        let epsilon = (epsilon * EPSILON_SCALE as f64).round() / EPSILON_SCALE as f64;
        if !(epsilon..=MAX_DAILY_BUDGET).contains(&daily_budget) {
            return Err(format!(
                "daily budget {daily_budget} is out of range: use a value from epsilon \
                 ({epsilon}) to {MAX_DAILY_BUDGET}"
            ));
        }
        Ok(Self {
            epsilon,
            daily_budget,
        })
    }

    /// Parses `epsilon=1.0,daily-budget=20` (`optel projects dp`; the budget defaults to 20 ε).
    ///
    /// # Errors
    /// A message naming the bad part.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut epsilon = None;
        let mut budget = None;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("{part:?} is not key=value: write epsilon=1.0,daily-budget=20")
            })?;
            let n: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{k} {v:?} is not a number"))?;
            match k.trim() {
                "epsilon" => epsilon = Some(n),
                "daily-budget" => budget = Some(n),
                other => {
                    return Err(format!(
                        "{other:?} is not a setting: use epsilon and daily-budget"
                    ));
                }
            }
        }
        let epsilon = epsilon.ok_or("epsilon is missing: write epsilon=1.0,daily-budget=20")?;
        Self::new(epsilon, budget.unwrap_or(20.0 * epsilon))
    }

    /// The noise scale of a view of sensitivity `sensitivity` as the integer ratio `(s, t)` of
    /// [`Noise::discrete_laplace`]: `s / t = ε / Δ`.
    fn ratio(self, sensitivity: u64) -> (u64, u64) {
        let s = ((self.epsilon * EPSILON_SCALE as f64).round() as u64).max(1);
        let t = EPSILON_SCALE * sensitivity.max(1);
        let g = gcd(s, t);
        (s / g, t / g)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// What a differentially private answer says about its noise (`dp` in every public answer of a
/// project in DP mode), so that the page can show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpInfo {
    /// `two-sided geometric`.
    pub mechanism: String,
    /// What one unit of privacy protects: `event` (see `PRIVACY.md`).
    pub unit: String,
    /// ε of one fresh answer.
    pub epsilon: f64,
    /// Sensitivity Δ of this view: how many of its numbers one event can change by one. The
    /// noise of each number has scale Δ/ε (standard deviation about √2·Δ/ε).
    pub sensitivity: u64,
    /// ε the project may spend per UTC day.
    pub daily_budget: f64,
    /// ε spent today, this answer included.
    pub spent: f64,
    /// ε left today.
    pub remaining: f64,
    /// The UTC day of the budget, `YYYY-MM-DD`.
    pub day: String,
    /// `true` when this answer was computed earlier today and is served again (the same
    /// question, or any question once the budget is spent), so it cost nothing now.
    pub cached: bool,
    /// First UTC day the numbers cover, `YYYY-MM-DD` (a cached answer may cover another range
    /// than the one asked once the budget is spent).
    pub first_day: String,
    /// Last UTC day the numbers cover.
    pub last_day: String,
}

/// An exact sampler of the discrete Laplace distribution.
pub(crate) struct Noise {
    rng: StdRng,
}

impl Noise {
    /// A generator seeded with 32 bytes from the OS.
    ///
    /// # Errors
    /// The OS has no randomness to give.
    pub(crate) fn from_os() -> std::io::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self::seeded(seed))
    }

    /// A generator from a fixed seed: reproducible noise, for tests only.
    pub(crate) fn seeded(seed: [u8; 32]) -> Self {
        Self {
            rng: StdRng::from_seed(seed),
        }
    }

    /// `true` with probability `n / d` (`0 ≤ n ≤ d`, `d ≥ 1`), exactly.
    fn bernoulli(&mut self, n: u64, d: u64) -> bool {
        self.rng.random_range(0..d) < n
    }

    /// `true` with probability `exp(-n/d)`, exactly (CKS20 algorithm 1).
    fn bernoulli_exp(&mut self, mut n: u64, d: u64) -> bool {
        // exp(-γ) = exp(-1)^⌊γ⌋ · exp(-(γ - ⌊γ⌋)).
        while n > d {
            if !self.bernoulli_exp(1, 1) {
                return false;
            }
            n -= d;
        }
        let mut k = 1;
        while self.bernoulli(n, d.saturating_mul(k)) {
            k += 1;
        }
        k % 2 == 1
    }

    /// One sample `z` with `P(z) ∝ exp(-|z|·s/t)` (CKS20 algorithm 2), `s, t ≥ 1`.
    pub(crate) fn discrete_laplace(&mut self, s: u64, t: u64) -> i64 {
        loop {
            let u = self.rng.random_range(0..t);
            if !self.bernoulli_exp(u, t) {
                continue;
            }
            let mut v: u64 = 0;
            while self.bernoulli_exp(1, 1) {
                v += 1;
            }
            let y = (u.saturating_add(t.saturating_mul(v)) / s) as i64;
            let negative = self.rng.random_range(0..2u8) == 1;
            if negative && y == 0 {
                continue;
            }
            return if negative { -y } else { y };
        }
    }
}

/// Adds noise of one scale to the numbers of one answer.
pub(crate) struct Noiser<'a> {
    noise: &'a mut Noise,
    s: u64,
    t: u64,
}

impl Noiser<'_> {
    fn count(&mut self, n: u64) -> u64 {
        let z = self.noise.discrete_laplace(self.s, self.t);
        // Clamping at 0 is post-processing: it costs no privacy.
        (n as i64).saturating_add(z).max(0) as u64
    }

    fn opt(&mut self, n: Option<u64>) -> Option<u64> {
        n.map(|n| self.count(n))
    }
}

/// Adds noise to `answer` with `settings`, and returns its sensitivity.
pub(crate) fn privatize<T: Private>(
    answer: &mut T,
    settings: DpSettings,
    noise: &mut Noise,
) -> u64 {
    let (s, t) = settings.ratio(T::SENSITIVITY);
    let mut n = Noiser { noise, s, t };
    answer.add_noise(&mut n);
    T::SENSITIVITY
}

/// A public answer that the DP mode can add noise to.
pub(crate) trait Private {
    /// How many of the answer's numbers one event can change, each by at most one (its L1
    /// sensitivity at the event level, for a fixed set of shown groups).
    const SENSITIVITY: u64;
    /// Adds noise to every count, and re-derives what is computed from counts.
    fn add_noise(&mut self, n: &mut Noiser<'_>);
    /// Sets the answer's `dp` field.
    fn set_dp(&mut self, info: DpInfo);
}

impl Private for Overview {
    // events, invocations, failures, active_installs, dau, wau, mau.
    const SENSITIVITY: u64 = 7;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        self.events = n.opt(self.events);
        self.invocations = n.opt(self.invocations);
        self.failures = n
            .opt(self.failures)
            .map(|f| f.min(self.invocations.unwrap_or(0)));
        self.active_installs = n.opt(self.active_installs);
        self.dau = n.opt(self.dau);
        self.wau = n.opt(self.wau);
        self.mau = n.opt(self.mau);
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

impl Private for Timeseries {
    // One bucket's events, invocations, failures, active_installs.
    const SENSITIVITY: u64 = 4;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        for b in &mut self.buckets {
            b.events = n.opt(b.events);
            b.invocations = n.opt(b.invocations);
            b.failures = n.opt(b.failures).map(|f| f.min(b.invocations.unwrap_or(0)));
            b.active_installs = n.opt(b.active_installs);
        }
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

impl Private for Listed<Commands> {
    // One row's count, failures, installs (durations are not released in DP mode).
    const SENSITIVITY: u64 = 3;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        for r in &mut self.rows.commands {
            r.count = n.count(r.count);
            r.failures = n.count(r.failures).min(r.count);
            r.failure_rate = if r.count > 0 {
                r.failures as f64 / r.count as f64
            } else {
                0.0
            };
            r.installs = n.count(r.installs);
            r.p50_ms = 0;
            r.p95_ms = 0;
        }
        self.rows
            .commands
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

impl Private for Listed<Errors> {
    // One row's count and installs.
    const SENSITIVITY: u64 = 2;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        for r in &mut self.rows.errors {
            r.count = n.count(r.count);
            r.installs = n.count(r.installs);
        }
        self.rows.errors.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.command, &a.error_code).cmp(&(&b.command, &b.error_code)))
        });
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

impl Private for Listed<Versions> {
    // One version row's installs and events, and one bucket's installs.
    const SENSITIVITY: u64 = 3;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        for r in &mut self.rows.versions {
            r.installs = n.count(r.installs);
            r.events = n.count(r.events);
        }
        for b in &mut self.rows.buckets {
            b.installs = n.opt(b.installs);
        }
        self.rows.versions.sort_by(|a, b| {
            b.installs
                .cmp(&a.installs)
                .then_with(|| b.version.cmp(&a.version))
        });
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

impl Private for Listed<Platforms> {
    // One row's installs and events.
    const SENSITIVITY: u64 = 2;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        for r in &mut self.rows.platforms {
            r.installs = n.count(r.installs);
            r.events = n.count(r.events);
        }
        self.rows.platforms.sort_by(|a, b| {
            b.installs
                .cmp(&a.installs)
                .then_with(|| (&a.os, &a.arch).cmp(&(&b.os, &b.arch)))
        });
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

impl Private for Listed<Features> {
    // One feature's or method's count and installs.
    const SENSITIVITY: u64 = 2;
    fn add_noise(&mut self, n: &mut Noiser<'_>) {
        for list in [&mut self.rows.features, &mut self.rows.methods] {
            noisy_named(list, n);
        }
    }
    fn set_dp(&mut self, info: DpInfo) {
        self.dp = Some(info);
    }
}

fn noisy_named(rows: &mut [NamedRow], n: &mut Noiser<'_>) {
    for r in rows.iter_mut() {
        r.count = n.count(r.count);
        r.installs = n.count(r.installs);
    }
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `P(z)` of the two-sided geometric distribution with `α = exp(-ε/Δ)`.
    fn pmf(alpha: f64, z: i64) -> f64 {
        (1.0 - alpha) / (1.0 + alpha) * alpha.powi(z.unsigned_abs() as i32)
    }

    /// A chi-square goodness-of-fit test of the sampler against the exact distribution, on a
    /// fixed seed (so the test is deterministic), for two scales.
    #[test]
    fn noise_has_the_two_sided_geometric_distribution() {
        for (epsilon, sensitivity, n) in [(1.0, 1, 200_000u32), (0.5, 3, 100_000)] {
            let settings = DpSettings::new(epsilon, 100.0).unwrap();
            let (s, t) = settings.ratio(sensitivity);
            let alpha = (-epsilon / sensitivity as f64).exp();
            let mut noise = Noise::seeded([7; 32]);
            let samples: Vec<i64> = (0..n).map(|_| noise.discrete_laplace(s, t)).collect();
            // Bins |z| < m each, and the two tails; every bin expects ≥ 5 samples.
            let m = (1..)
                .find(|&z| pmf(alpha, z) * f64::from(n) < 20.0)
                .unwrap_or(10);
            let mut observed = vec![0f64; (2 * m + 1) as usize];
            for &z in &samples {
                let bin = z.clamp(-m, m) + m;
                observed[bin as usize] += 1.0;
            }
            let tail: f64 = alpha.powi(m as i32) / (1.0 + alpha);
            let mut chi2 = 0.0;
            for (i, o) in observed.iter().enumerate() {
                let z = i as i64 - m;
                let p = if z.abs() == m { tail } else { pmf(alpha, z) };
                let e = p * f64::from(n);
                chi2 += (o - e) * (o - e) / e;
            }
            // 99.9th percentile of chi-square with (2m + 1) - 1 degrees of freedom, by the
            // Wilson–Hilferty approximation.
            let df = (2 * m) as f64;
            let z999 = 3.09;
            let limit = df * (1.0 - 2.0 / (9.0 * df) + z999 * (2.0 / (9.0 * df)).sqrt()).powi(3);
            assert!(
                chi2 < limit,
                "ε {epsilon} Δ {sensitivity}: chi2 {chi2} ≥ {limit}"
            );
            // Mean 0, variance 2α/(1-α)².
            let mean = samples.iter().sum::<i64>() as f64 / f64::from(n);
            let var = samples
                .iter()
                .map(|&z| (z as f64 - mean).powi(2))
                .sum::<f64>()
                / f64::from(n);
            let want = 2.0 * alpha / (1.0 - alpha).powi(2);
            assert!(mean.abs() < 0.05 * want.sqrt() * 3.0, "mean {mean}");
            assert!(
                (var / want - 1.0).abs() < 0.03,
                "variance {var}, want {want}"
            );
        }
    }

    #[test]
    fn settings_are_validated_and_parsed() {
        let s = DpSettings::parse("epsilon=0.5,daily-budget=4").unwrap();
        assert_eq!((s.epsilon, s.daily_budget), (0.5, 4.0));
        assert_eq!(DpSettings::parse("epsilon=1").unwrap().daily_budget, 20.0);
        assert!(
            DpSettings::parse("epsilon=0")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            DpSettings::parse("epsilon=1,daily-budget=0.5")
                .unwrap_err()
                .contains("budget")
        );
        assert!(
            DpSettings::parse("delta=1")
                .unwrap_err()
                .contains("not a setting")
        );
        assert_eq!(DpSettings::new(1.0, 2.0).unwrap().ratio(7), (1, 7));
        assert_eq!(DpSettings::new(0.25, 2.0).unwrap().ratio(2), (1, 8));
    }

    #[test]
    fn noise_never_makes_a_count_negative_or_failures_exceed_invocations() {
        let mut c = Listed {
            rows: Commands {
                commands: vec![super::super::CommandRow {
                    name: "build".into(),
                    count: 1,
                    failures: 1,
                    failure_rate: 1.0,
                    installs: 1,
                    p50_ms: 10,
                    p95_ms: 20,
                }],
            },
            suppressed_rows: Some(0),
            k: Some(5),
            dp: None,
        };
        let mut noise = Noise::seeded([1; 32]);
        for _ in 0..200 {
            privatize(&mut c, DpSettings::new(0.1, 1.0).unwrap(), &mut noise);
            let r = &c.rows.commands[0];
            assert!(r.failures <= r.count);
            assert_eq!((r.p50_ms, r.p95_ms), (0, 0));
        }
    }
}
