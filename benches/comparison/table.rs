//! The two tables a run prints: nftsentry beside PortSentry 1.2, and (with
//! `--baseline`) this commit's nftsentry beside the baseline binary, each
//! row with how many times better the first figure is.

/// Which way is better for a row, to compute "how many times better".
#[derive(Clone, Copy)]
pub enum Better {
    Lower,
    Higher,
}

struct Row {
    what: String,
    ours: String,
    other: String,
    ratio: String,
}

pub struct Table {
    header: String,
    rows: Vec<Row>,
    notes: Vec<String>,
}

pub fn fmt_num(v: f64, unit: &str) -> String {
    let s = if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 100_000.0 {
        let mut s = format!("{:.0}", v);
        // Thousands separators for the big counts and rates.
        let mut i = s.len() as isize - 3;
        while i > 0 {
            s.insert(i as usize, ',');
            i -= 3;
        }
        s
    } else if v.abs() >= 100.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else if v.abs() >= 0.1 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    };
    if unit.is_empty() {
        s
    } else {
        format!("{s} {unit}")
    }
}

/// How many times better `ours` is than `other` (a zero on one side
/// prints as a bound or "—").
fn ratio(ours: f64, other: f64, better: Better) -> String {
    match better {
        Better::Lower if ours > 0.0 => format!("{}×", fmt_num(other / ours, "")),
        Better::Lower if other > 0.0 => "∞ (nftsentry: 0)".to_string(),
        Better::Higher if other > 0.0 => format!("{}×", fmt_num(ours / other, "")),
        _ if ours == other => "1×".to_string(),
        _ => "—".to_string(),
    }
}

impl Table {
    /// `columns`: the two figures' column names and the ratio's.
    pub fn new(columns: &str) -> Table {
        Table {
            header: format!("| measurement | {columns} |"),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A row with both figures and the ratio.
    pub fn both(&mut self, what: &str, ours: f64, other: f64, unit: &str, better: Better) {
        self.rows.push(Row {
            what: what.into(),
            ours: fmt_num(ours, unit),
            other: fmt_num(other, unit),
            ratio: ratio(ours, other, better),
        });
    }

    pub fn text(&mut self, what: &str, ours: &str, other: &str, ratio: &str) {
        self.rows.push(Row {
            what: what.into(),
            ours: ours.into(),
            other: other.into(),
            ratio: ratio.into(),
        });
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn print(&self) {
        println!();
        println!("{}", self.header);
        println!("|---|---:|---:|---:|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} |", r.what, r.ours, r.other, r.ratio);
        }
        println!();
        for (i, n) in self.notes.iter().enumerate() {
            println!("{}. {n}", i + 1);
        }
    }
}

/// Both tables. Every nftsentry row goes into the first (beside PortSentry,
/// or "n/a" where it has no figure) and, with a baseline, into the second
/// (beside the baseline's figure from the same run).
pub struct Report {
    pub ps: Table,
    pub base: Option<Table>,
}

impl Report {
    pub fn new(baseline_title: Option<String>) -> Report {
        Report {
            ps: Table::new(
                "nftsentry | PortSentry 1.2 (or what its KILL_ROUTE builds) | nftsentry better by",
            ),
            base: baseline_title
                .map(|t| Table::new(&format!("this commit | {t} | this commit better by"))),
        }
    }

    /// A row: this commit's figure, the baseline's (None: not measured,
    /// or no baseline) and PortSentry's (None: it has no such figure).
    pub fn row(
        &mut self,
        what: &str,
        ours: f64,
        base: Option<f64>,
        ps: Option<f64>,
        unit: &str,
        better: Better,
    ) {
        match ps {
            Some(v) => self.ps.both(what, ours, v, unit, better),
            None => self.ps.text(what, &fmt_num(ours, unit), "n/a", "n/a"),
        }
        if let Some(b) = &mut self.base {
            match base {
                Some(v) => b.both(what, ours, v, unit, better),
                None => b.text(what, &fmt_num(ours, unit), "not measured", "—"),
            }
        }
    }

    /// A row of text (a measurement that could not be made says why).
    pub fn text(&mut self, what: &str, ours: &str, base: Option<&str>, ps: &str) {
        self.ps.text(what, ours, ps, "—");
        if let Some(b) = &mut self.base {
            b.text(what, ours, base.unwrap_or("not measured"), "—");
        }
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.ps.note(n);
    }
}
