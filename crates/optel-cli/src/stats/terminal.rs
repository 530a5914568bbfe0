//! The terminal: whether to colour, how wide to draw, and tables that fit.

use std::fmt::Write as _;

use super::text::fit;

/// Whether to colour: `--color always|never`, or with `auto` only on a terminal, unless
/// `NO_COLOR` is set to anything non-empty (no-color.org) or `TERM=dumb`.
pub(super) fn use_color(choice: clap::ColorChoice, tty: bool) -> bool {
    match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => {
            tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

/// Columns to fit tables into: `COLUMNS` if set, else the terminal's width, else (a pipe or a
/// file) no limit.
pub(super) fn terminal_width(tty: bool) -> usize {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return cols.max(20);
    }
    if tty && let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
        return usize::from(w).max(20);
    }
    usize::MAX / 4
}

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paint {
    Plain,
    Warn,
    Bad,
}

impl Style {
    pub(super) fn new(color: bool) -> Self {
        Self { color }
    }
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    pub(super) fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    pub(super) fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    pub(super) fn spark(&self, s: &str) -> String {
        self.wrap("36", s)
    }
    pub(super) fn paint(&self, p: Paint, s: &str) -> String {
        match p {
            Paint::Plain => s.to_owned(),
            Paint::Warn => self.wrap("33", s),
            Paint::Bad => self.wrap("31", s),
        }
    }
}

/// A table cell: its text, whether it is a number (right-aligned), its colour.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    text: String,
    numeric: bool,
    paint: Paint,
}

impl Cell {
    pub(super) fn text(s: &str) -> Self {
        Self {
            text: s.to_owned(),
            numeric: false,
            paint: Paint::Plain,
        }
    }
    pub(super) fn num(s: String) -> Self {
        Self {
            text: s,
            numeric: true,
            paint: Paint::Plain,
        }
    }
    pub(super) fn paint(mut self, p: Paint) -> Self {
        self.paint = p;
        self
    }
}

/// Narrowest a text column is cut to before columns are dropped.
const MIN_TEXT_WIDTH: usize = 8;

/// Renders a table two spaces between columns, text left and numbers right (as `ls -l`),
/// fitted to `width`: the widest text columns are cut first (marked `…`), then the rightmost
/// columns are left out, never the first two.
pub(super) fn table(
    out: &mut String,
    st: &Style,
    width: usize,
    header: &[&str],
    rows: &[Vec<Cell>],
) {
    let ncols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.text.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..ncols)
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r.get(i).is_some_and(|c| c.numeric)))
        .collect();
    let total = |widths: &[usize], n: usize| widths[..n].iter().sum::<usize>() + 2 * (n - 1);
    let mut shown = ncols;
    while total(&widths, shown) > width {
        // Cut the widest text column that is still above the minimum.
        let widest = (0..shown)
            .filter(|&i| !numeric[i] && widths[i] > MIN_TEXT_WIDTH.max(header[i].len()))
            .max_by_key(|&i| widths[i]);
        if let Some(i) = widest {
            let over = total(&widths, shown) - width;
            let floor = MIN_TEXT_WIDTH.max(header[i].len());
            widths[i] = widths[i].saturating_sub(over).max(floor);
        } else if shown > 2 {
            shown -= 1;
        } else {
            break;
        }
    }
    let line = |out: &mut String, cells: Vec<(String, Paint)>, is_header: bool| {
        let mut parts = Vec::with_capacity(shown);
        for (i, (text, paint)) in cells.into_iter().take(shown).enumerate() {
            let w = widths[i];
            let text = fit(&text, w);
            let padded = if numeric[i] {
                format!("{text:>w$}")
            } else if i + 1 == shown {
                text
            } else {
                format!("{text:<w$}")
            };
            parts.push(if is_header {
                st.bold(&padded)
            } else {
                st.paint(paint, &padded)
            });
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(
        out,
        header
            .iter()
            .map(|h| ((*h).to_owned(), Paint::Plain))
            .collect(),
        true,
    );
    for row in rows {
        line(
            out,
            row.iter().map(|c| (c.text.clone(), c.paint)).collect(),
            false,
        );
    }
    if shown < ncols {
        let _ = writeln!(
            out,
            "{}",
            st.dim(&fit(
                &format!(
                    "({} more column{} hidden: widen the terminal or use --format csv)",
                    ncols - shown,
                    if ncols - shown == 1 { "" } else { "s" }
                ),
                width
            ))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(names: &[&str]) -> Vec<Vec<Cell>> {
        names
            .iter()
            .map(|n| {
                vec![
                    Cell::text(n),
                    Cell::num("12".into()),
                    Cell::num("3".into()),
                    Cell::num("25.0%".into()).paint(Paint::Bad),
                ]
            })
            .collect()
    }

    #[test]
    fn tables_fit_the_width_by_cutting_text_then_dropping_columns() {
        let header = ["COMMAND", "RUNS", "FAILED", "FAIL%"];
        let plain = Style::new(false);
        let r = rows(&["a-very-long-command-name-indeed", "build"]);

        let mut wide = String::new();
        table(&mut wide, &plain, 200, &header, &r);
        assert!(wide.contains("a-very-long-command-name-indeed"));
        assert!(wide.lines().next().unwrap().starts_with("COMMAND"));

        let mut narrow = String::new();
        table(&mut narrow, &plain, 30, &header, &r);
        assert!(narrow.lines().all(|l| l.chars().count() <= 30), "{narrow}");
        assert!(narrow.contains('…'));
        assert!(narrow.contains("FAIL%"));

        let mut tiny = String::new();
        table(&mut tiny, &plain, 20, &header, &r);
        assert!(
            tiny.lines().take(3).all(|l| l.chars().count() <= 20),
            "{tiny}"
        );
        assert!(tiny.contains("(2 more col"), "{tiny}");
        assert!(!tiny.contains("FAIL%"));
    }

    #[test]
    fn colour_only_when_asked_and_never_in_the_width() {
        let r = rows(&["build"]);
        let mut colored = String::new();
        table(
            &mut colored,
            &Style::new(true),
            80,
            &["C", "R", "F", "P"],
            &r,
        );
        assert!(colored.contains("\x1b[31m25.0%\x1b[0m"));
        let mut plain = String::new();
        table(
            &mut plain,
            &Style::new(false),
            80,
            &["C", "R", "F", "P"],
            &r,
        );
        assert!(!plain.contains('\x1b'));
        // Stripping the escapes gives the plain table: colour does not shift columns.
        let stripped: String = {
            let mut s = String::new();
            let mut in_esc = false;
            for ch in colored.chars() {
                match (in_esc, ch) {
                    (false, '\x1b') => in_esc = true,
                    (true, 'm') => in_esc = false,
                    (true, _) => {}
                    (false, c) => s.push(c),
                }
            }
            s
        };
        assert_eq!(stripped, plain);
        assert!(!use_color(clap::ColorChoice::Never, true));
        assert!(use_color(clap::ColorChoice::Always, false));
        assert!(!use_color(clap::ColorChoice::Auto, false));
    }
}
