//! Formatting helpers: numbers, percentages, durations, CSV cells, sparklines, cutting and
//! wrapping text to a width.

/// `1234567` → `1,234,567`.
pub(super) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub(super) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

pub(super) fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Milliseconds for people: `840ms`, `4.2s`, `3.1m`.
pub(super) fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{:.1}m", ms as f64 / 60_000.0),
    }
}

/// A CSV cell (RFC 4180 quoting). Text a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@`, tab, CR first) gets a leading `'`.
pub(super) fn csv_cell(s: &str) -> String {
    let is_number = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let s = if !is_number && s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub(super) const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values` at most `max_width` characters wide: each character is the largest
/// value of its group of buckets, scaled from the smallest to the largest group (as classic
/// sparklines do, so that a trend shows even on large counts); equal values sit mid-height; a
/// missing (suppressed) value is a space.
pub(super) fn sparkline(values: &[Option<u64>], max_width: usize) -> String {
    if values.is_empty() || max_width == 0 {
        return String::new();
    }
    let group_size = values.len().div_ceil(max_width);
    let groups: Vec<Option<u64>> = values
        .chunks(group_size)
        .map(|c| c.iter().flatten().copied().max())
        .collect();
    let max = groups.iter().flatten().copied().max().unwrap_or(0);
    let min = groups.iter().flatten().copied().min().unwrap_or(0);
    let span = u128::from(max - min);
    groups
        .iter()
        .map(|g| match *g {
            None => ' ',
            Some(_) if span == 0 => BARS[4],
            Some(v) => {
                // round((v - min) * 7 / span), in u128 so huge counts cannot overflow.
                let level = (u128::from(v - min) * 7 + span / 2) / span;
                BARS[(level as usize).min(7)]
            }
        })
        .collect()
}

/// `parts` joined by `sep` into lines of at most `width` characters (a part longer than the
/// width is cut).
pub(super) fn wrap_parts(parts: &[String], sep: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for part in parts {
        let part = fit(part, width);
        if current.is_empty() {
            current = part;
        } else if current.chars().count() + sep.chars().count() + part.chars().count() <= width {
            current.push_str(sep);
            current.push_str(&part);
        } else {
            lines.push(std::mem::replace(&mut current, part));
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `s` cut to `width` characters, with `…` marking the cut.
pub(super) fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_from_zero_to_max_and_fits_its_width() {
        let v: Vec<Option<u64>> = [0, 1, 2, 4, 8].iter().map(|&n| Some(n)).collect();
        assert_eq!(sparkline(&v, 10), "▁▂▃▅█");
        assert_eq!(sparkline(&[Some(3), None, Some(3)], 10), "▅ ▅");
        let long: Vec<Option<u64>> = (0..90).map(Some).collect();
        let s = sparkline(&long, 30);
        assert_eq!(s.chars().count(), 30);
        assert!(s.ends_with('█'));
        assert_eq!(sparkline(&[Some(u64::MAX), Some(1)], 4), "█▁");
        assert_eq!(sparkline(&[Some(90), Some(120), Some(150)], 4), "▁▅█");
        assert_eq!(sparkline(&[], 4), "");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("build"), "build");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=cmd()"), "'=cmd()");
        assert_eq!(csv_cell("-x"), "'-x");
        assert_eq!(csv_cell("42"), "42");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(840), "840ms");
        assert_eq!(human_ms(4200), "4.2s");
        assert_eq!(human_ms(180_000), "3.0m");
    }
}
