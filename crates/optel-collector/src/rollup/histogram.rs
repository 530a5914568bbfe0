//! Histogram buckets: [`duration_bucket`] (command durations, log-linear) and [`value_bucket`]
//! (phase durations and measurement values, logarithmic with [`RELATIVE_ACCURACY`]), their
//! quantiles, and [`BucketCounts`], the binary histogram `rollup_phases` stores.

/// Number of histogram buckets: durations up to 7 days fit.
pub const DURATION_BUCKETS: i64 = 8 + 4 * 27;

/// The histogram bucket of a duration in ms: exact below 8 ms, then four buckets per power of
/// two (relative error of a bucket's midpoint at most 12.5 %).
pub fn duration_bucket(ms: u64) -> i64 {
    if ms < 8 {
        return ms as i64;
    }
    let e = 63 - i64::from(ms.leading_zeros()); // e >= 3
    let sub = ((ms >> (e - 2)) & 3) as i64;
    (8 + (e - 3) * 4 + sub).min(DURATION_BUCKETS - 1)
}

/// The representative duration (ms) of a bucket: its midpoint, rounded down.
pub fn bucket_value(bucket: i64) -> u64 {
    if bucket < 8 {
        return bucket.max(0) as u64;
    }
    let e = (bucket - 8) / 4 + 3;
    let sub = ((bucket - 8) % 4) as u64;
    let width = 1u64 << (e - 2);
    let lower = (4 + sub) * width;
    lower + width / 2
}

/// The bucket holding the `q`-quantile (0..=1) of a histogram given as `(bucket, count)`
/// pairs, whose bucket order is value order; `None` if empty.
fn quantile_bucket(hist: &[(i64, i64)], q: f64) -> Option<i64> {
    let mut sorted: Vec<(i64, i64)> = hist.iter().copied().filter(|&(_, c)| c > 0).collect();
    sorted.sort_unstable();
    let total: i64 = sorted.iter().map(|&(_, c)| c).sum();
    if total <= 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
    let mut seen = 0;
    for (bucket, count) in sorted {
        seen += count;
        if seen >= rank {
            return Some(bucket);
        }
    }
    None
}

/// The `q`-quantile (0..=1) of a histogram given as `(bucket, count)` pairs, in ms; 0 if empty.
pub fn percentile(hist: &[(i64, i64)], q: f64) -> u64 {
    quantile_bucket(hist, q).map_or(0, bucket_value)
}

/// Relative accuracy of [`value_bucket`]: a bucket's representative value
/// ([`bucket_estimate`]) is within 1.9 % of every value in the bucket.
pub const RELATIVE_ACCURACY: f64 = 0.019;

/// Magnitudes below this (1e-6) count as zero in [`value_bucket`].
pub const MIN_MAGNITUDE: f64 = 1e-6;

/// `ln` of the bucket ratio γ = (1 + α) / (1 − α), α = [`RELATIVE_ACCURACY`].
fn ln_gamma() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

/// The bucket index of the smallest magnitude: buckets of positive values start at 1.
fn bucket_offset() -> i64 {
    (MIN_MAGNITUDE.ln() / ln_gamma()).ceil() as i64 - 1
}

/// The histogram bucket of a phase duration (ms) or a measurement value: 0 for zero (and
/// magnitudes below [`MIN_MAGNITUDE`]), `i > 0` for positive values in
/// `(γ^(i+o-1), γ^(i+o)]`, `-i` for the negative value of the same magnitude, where γ is the
/// bucket ratio of [`RELATIVE_ACCURACY`] and `o` a fixed offset. Bucket order is value order.
/// Not-a-number and infinities, which validation refuses, land in bucket 0.
pub fn value_bucket(v: f64) -> i64 {
    let m = v.abs();
    if !m.is_finite() || m < MIN_MAGNITUDE {
        return 0;
    }
    let i = ((m.ln() / ln_gamma()).ceil() as i64 - bucket_offset()).max(1);
    if v < 0.0 { -i } else { i }
}

/// The representative value of a [`value_bucket`]: `2γ^k / (γ + 1)` for its upper bound γ^k,
/// within [`RELATIVE_ACCURACY`] of every value in the bucket.
pub fn bucket_estimate(bucket: i64) -> f64 {
    if bucket == 0 {
        return 0.0;
    }
    let k = (bucket.abs() + bucket_offset()) as f64;
    let gamma = ln_gamma().exp();
    let v = 2.0 * (k * ln_gamma()).exp() / (gamma + 1.0);
    if bucket < 0 { -v } else { v }
}

/// The `q`-quantile (0..=1) of a [`value_bucket`] histogram given as `(bucket, count)` pairs;
/// 0 if empty.
pub fn value_quantile(hist: &[(i64, i64)], q: f64) -> f64 {
    quantile_bucket(hist, q).map_or(0.0, bucket_estimate)
}

/// Largest bucket magnitude a [`BucketCounts`] holds: every finite value's [`value_bucket`]
/// lies within `±MAX_VALUE_BUCKET` (the largest, of `f64::MAX`, is about 19,000), so a stored
/// histogram claiming a bucket beyond it is malformed.
pub const MAX_VALUE_BUCKET: i64 = 1 << 15;

/// Tag of the stored form of [`BucketCounts::encode`] (its first byte).
const HIST_FORMAT: u8 = 1;

/// A histogram of [`value_bucket`] counts, dense from its lowest non-zero bucket to its highest
/// one (zeros in between are kept, none at either end). Counts may be negative: a rollup delta
/// of deleted events subtracts, and buckets that fall to zero are dropped from the ends.
///
/// It is what `rollup_phases` stores per key, in place of a JSON object of ~150 buckets
/// (~2.6 KB) that every `/phases` query parsed (BENCHMARKS.md, "Phase histograms in binary"):
/// SQLite keeps [`BucketCounts::encode`] (a BLOB of ~200 bytes) and PostgreSQL
/// [`BucketCounts::to_array`] (an `int8[]`), each merged in the upsert by the database
/// function `optel_hist_add`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Bucket of `counts[0]` (0 when empty).
    first: i64,
    /// Counts of buckets `first`, `first + 1`, …; empty, or non-zero at both ends.
    counts: Vec<i64>,
}

impl BucketCounts {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Adds `count` (negative to subtract) to `bucket`. A bucket beyond [`MAX_VALUE_BUCKET`]
    /// (which [`value_bucket`] never returns) is ignored.
    pub fn add(&mut self, bucket: i64, count: i64) {
        if count == 0 || bucket.unsigned_abs() > MAX_VALUE_BUCKET as u64 {
            return;
        }
        if self.counts.is_empty() {
            self.first = bucket;
            self.counts.push(count);
            return;
        }
        self.cover(bucket, bucket);
        if let Some(slot) = self.counts.get_mut((bucket - self.first) as usize) {
            *slot = slot.saturating_add(count);
        }
        self.trim();
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Self) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.clone_from(other);
            return;
        }
        let last = other.first + other.counts.len() as i64 - 1;
        self.cover(other.first, last);
        let offset = (other.first - self.first) as usize;
        for (slot, &c) in self.counts.iter_mut().skip(offset).zip(&other.counts) {
            // Saturating: a damaged row must not panic a query.
            *slot = slot.saturating_add(c);
        }
        self.trim();
    }

    /// Widens the (non-empty) dense range to hold buckets `lo..=hi`.
    fn cover(&mut self, lo: i64, hi: i64) {
        if lo < self.first {
            let grow = (self.first - lo) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = lo;
        }
        let end = self.first + self.counts.len() as i64;
        if hi >= end {
            self.counts
                .resize(self.counts.len() + (hi - end + 1) as usize, 0);
        }
    }

    /// Drops zero counts from both ends.
    fn trim(&mut self) {
        let Some(start) = self.counts.iter().position(|&c| c != 0) else {
            self.counts.clear();
            self.first = 0;
            return;
        };
        let end = self
            .counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |e| e + 1);
        self.counts.truncate(end);
        self.counts.drain(..start);
        self.first += start as i64;
    }

    /// The non-zero `(bucket, count)` pairs, in bucket (and so value) order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0)
            .map(|(i, &c)| (self.first + i as i64, c))
    }

    /// The sum of the counts (negative only for a delta of deleted events).
    pub fn total(&self) -> i64 {
        self.counts.iter().fold(0, |a, &c| a.saturating_add(c))
    }

    /// The `q`-quantile (0..=1) of the positive counts ([`bucket_estimate`] of its bucket); 0
    /// if there are none. The same as [`value_quantile`] of [`BucketCounts::iter`], without
    /// sorting.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self
            .counts
            .iter()
            .filter(|&&c| c > 0)
            .fold(0i64, |a, &c| a.saturating_add(c));
        if total <= 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                seen = c.saturating_add(seen);
                if seen >= rank {
                    return bucket_estimate(self.first + i as i64);
                }
            }
        }
        0.0
    }

    /// The stored form in SQLite: the byte `1`, then the first bucket and each count as
    /// zigzag LEB128 varints (1 byte for counts within ±63). An empty histogram is the byte
    /// `1` alone.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.counts.len() * 2);
        out.push(HIST_FORMAT);
        if self.counts.is_empty() {
            return out;
        }
        put_varint(&mut out, self.first);
        for &c in &self.counts {
            put_varint(&mut out, c);
        }
        out
    }

    /// Reads [`BucketCounts::encode`]. Anything malformed (another first byte, a truncated or
    /// overlong varint, a bucket beyond [`MAX_VALUE_BUCKET`]) reads as empty: a histogram is
    /// an aggregate, and a damaged one must not fail a dashboard query or an upsert.
    pub fn decode(bytes: &[u8]) -> Self {
        Self::try_decode(bytes).unwrap_or_default()
    }

    fn try_decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, mut rest) = bytes.split_first()?;
        if tag != HIST_FORMAT {
            return None;
        }
        if rest.is_empty() {
            return Some(Self::default());
        }
        let first = take_varint(&mut rest)?;
        let mut counts = Vec::with_capacity(rest.len());
        while !rest.is_empty() {
            counts.push(take_varint(&mut rest)?);
        }
        Self::from_dense(first, counts)
    }

    /// The stored form in PostgreSQL (`int8[]`): the first bucket, then each count; empty
    /// when the histogram is.
    pub fn to_array(&self) -> Vec<i64> {
        if self.counts.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(1 + self.counts.len());
        out.push(self.first);
        out.extend_from_slice(&self.counts);
        out
    }

    /// Reads [`BucketCounts::to_array`]; anything malformed reads as empty.
    pub fn from_array(array: &[i64]) -> Self {
        match array.split_first() {
            Some((&first, counts)) => Self::from_dense(first, counts.to_vec()).unwrap_or_default(),
            None => Self::default(),
        }
    }

    /// Reads the JSON object `{"bucket": count}` that `rollup_phases` stored before schema
    /// version 10 (SQLite) and 8 (PostgreSQL); anything malformed reads as empty.
    pub fn from_json(json: &str) -> Self {
        let mut out = Self::default();
        if let Ok(map) = serde_json::from_str::<std::collections::BTreeMap<String, i64>>(json) {
            for (bucket, count) in map {
                if let Ok(b) = bucket.parse() {
                    out.add(b, count);
                }
            }
        }
        out
    }

    /// A histogram of `counts` from bucket `first`, if every bucket is within
    /// [`MAX_VALUE_BUCKET`].
    fn from_dense(first: i64, counts: Vec<i64>) -> Option<Self> {
        let last = first.checked_add(counts.len() as i64)?.checked_sub(1)?;
        if first.unsigned_abs() > MAX_VALUE_BUCKET as u64 || last > MAX_VALUE_BUCKET {
            return None;
        }
        let mut h = Self { first, counts };
        h.trim();
        Some(h)
    }
}

/// Appends `v` as a zigzag LEB128 varint (at most 10 bytes).
fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Takes one zigzag LEB128 varint off the front of `bytes`; `None` if it is truncated or
/// longer than 10 bytes.
fn take_varint(bytes: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_round_trip_and_merge() {
        let pairs = [(400, 3), (-5, 1), (402, 1), (0, 2), (400, 1), (7_000, 1)];
        let mut h = BucketCounts::new();
        for (b, c) in pairs {
            h.add(b, c);
        }
        let expected = vec![(-5, 1), (0, 2), (400, 4), (402, 1), (7_000, 1)];
        assert_eq!(h.iter().collect::<Vec<_>>(), expected);
        assert_eq!(h.total(), 9);
        assert_eq!(BucketCounts::decode(&h.encode()), h);
        assert_eq!(BucketCounts::from_array(&h.to_array()), h);
        assert_eq!(
            BucketCounts::from_json(r#"{"-5":1,"0":2,"400":4,"402":1,"7000":1}"#),
            h
        );

        // Merging adds per bucket, whatever the ranges.
        let mut other = BucketCounts::new();
        other.add(-10, 2);
        other.add(401, 5);
        let mut merged = h.clone();
        merged.merge(&other);
        assert_eq!(
            merged.iter().collect::<Vec<_>>(),
            vec![
                (-10, 2),
                (-5, 1),
                (0, 2),
                (400, 4),
                (401, 5),
                (402, 1),
                (7_000, 1)
            ]
        );
        let mut other_first = other.clone();
        other_first.merge(&h);
        assert_eq!(other_first, merged);

        // Negative deltas subtract exactly; counts at zero leave the ends, and all of them
        // leave an empty histogram.
        let mut minus = BucketCounts::new();
        for (b, c) in h.iter() {
            minus.add(b, -c);
        }
        let mut back = merged.clone();
        back.merge(&minus);
        assert_eq!(back, other);
        back.merge(&{
            let mut m = BucketCounts::new();
            m.add(-10, -2);
            m.add(401, -5);
            m
        });
        assert!(back.is_empty());
        assert_eq!(back, BucketCounts::new());
        assert_eq!(back.encode(), vec![1]);
        assert!(back.to_array().is_empty());
        assert_eq!(BucketCounts::decode(&[1]), BucketCounts::new());

        // Counts of any size survive the varints.
        let mut big = BucketCounts::new();
        big.add(-MAX_VALUE_BUCKET, i64::MAX);
        big.add(MAX_VALUE_BUCKET, i64::MIN);
        big.add(3, -64);
        assert_eq!(BucketCounts::decode(&big.encode()), big);
        // Beyond the bucket bound: ignored.
        big.add(MAX_VALUE_BUCKET + 1, 1);
        big.add(i64::MIN, 1);
        assert_eq!(big.iter().count(), 3);
    }

    #[test]
    fn malformed_histograms_read_as_empty() {
        let empty = BucketCounts::new();
        let mut overlong = vec![1u8];
        overlong.extend([0xff; 11]);
        let mut beyond = vec![1u8];
        put_varint(&mut beyond, MAX_VALUE_BUCKET);
        beyond.extend([2, 2]); // two buckets: the second past the bound
        let mut too_low = vec![1u8];
        put_varint(&mut too_low, -MAX_VALUE_BUCKET - 1);
        too_low.push(2);
        for bytes in [
            &[][..],
            &[0],
            &[2, 0, 2],
            &[1, 0x80],
            &[1, 4, 0x81],
            &overlong,
            &beyond,
            &too_low,
            b"{\"400\": 1}",
        ] {
            assert_eq!(BucketCounts::decode(bytes), empty, "{bytes:?}");
        }
        for array in [
            &[i64::MAX, 1][..],
            &[i64::MIN, 1],
            &[MAX_VALUE_BUCKET, 1, 1],
            &[],
        ] {
            assert_eq!(BucketCounts::from_array(array), empty, "{array:?}");
        }
        for json in ["", "[1]", "{\"x\": 1}", "{\"1\": \"a\"}"] {
            assert_eq!(BucketCounts::from_json(json), empty, "{json}");
        }
    }

    #[test]
    fn bucket_counts_quantiles_match_value_quantile() {
        let mut h = BucketCounts::new();
        let mut pairs = Vec::new();
        for ms in 1..=300 {
            let b = value_bucket(f64::from(ms) * 1.7);
            h.add(b, 1);
            pairs.push((b, 1));
        }
        h.add(5, -3); // a stray negative count is left out, as value_quantile does
        pairs.push((5, -3));
        for q in [0.0, 0.01, 0.5, 0.95, 0.99, 1.0] {
            assert_eq!(h.quantile(q), value_quantile(&pairs, q), "q {q}");
        }
        assert_eq!(BucketCounts::new().quantile(0.5), 0.0);
    }

    #[test]
    fn value_buckets_are_ordered_and_within_the_documented_error() {
        let mut last = i64::MIN;
        let mut v = -5_000.0f64;
        while v < 5_000.0 {
            let b = value_bucket(v);
            assert!(b >= last, "bucket of {v} went down");
            last = b;
            let est = bucket_estimate(b);
            if v.abs() >= MIN_MAGNITUDE {
                let err = (est - v).abs() / v.abs();
                assert!(err <= RELATIVE_ACCURACY + 1e-12, "{v} -> {est} ({err})");
            }
            v += 0.37;
        }
        for v in [1e-3, 0.5, 1.0, 7.0, 1e6, 6.048e8, 1e12] {
            let est = bucket_estimate(value_bucket(v));
            assert!(
                (est - v).abs() / v <= RELATIVE_ACCURACY + 1e-12,
                "{v} -> {est}"
            );
        }
        assert_eq!(value_bucket(0.0), 0);
        assert_eq!(value_bucket(1e-9), 0);
        assert_eq!(bucket_estimate(0), 0.0);
        assert_eq!(value_bucket(f64::NAN), 0);
        let hist: Vec<(i64, i64)> = (1..=100).map(|ms| (value_bucket(ms as f64), 1)).collect();
        let p50 = value_quantile(&hist, 0.5);
        assert!((p50 - 50.0).abs() <= 50.0 * RELATIVE_ACCURACY, "p50 {p50}");
        assert_eq!(value_quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = -1;
        for ms in 0..100_000u64 {
            let b = duration_bucket(ms);
            assert!(b >= last, "bucket of {ms} went down");
            last = b;
            let v = bucket_value(b) as f64;
            assert!(
                (v - ms as f64).abs() <= (ms as f64) * 0.125 + 0.5,
                "{ms} -> {v}"
            );
        }
        assert_eq!(duration_bucket(u64::MAX), DURATION_BUCKETS - 1);
        assert!(duration_bucket(optel_wire::limits::MAX_DURATION_MS) < DURATION_BUCKETS);
    }

    #[test]
    fn percentiles_of_a_histogram() {
        let hist: Vec<(i64, i64)> = (1..=100u64)
            .map(|ms| (duration_bucket(ms * 10), 1))
            .collect();
        let p50 = percentile(&hist, 0.5);
        let p95 = percentile(&hist, 0.95);
        assert!((440..=560).contains(&p50), "p50 {p50}");
        assert!((830..=1070).contains(&p95), "p95 {p95}");
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
