//! The log view's data: lines kept from events (bounded), and the toggles that choose which of
//! them are shown (text filter, source, minimum level, denials only, pause).

use openshell_proto::pb;
use std::collections::VecDeque;

/// Log lines kept per open sandbox; older ones are dropped.
pub const LOG_HISTORY: usize = 100_000;

/// How a log line is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Deny,
    Allow,
    Warn,
    Error,
    Info,
}

/// Which source's lines are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFilter {
    All,
    Sandbox,
    Gateway,
}

impl SourceFilter {
    pub fn next(self) -> SourceFilter {
        match self {
            SourceFilter::All => SourceFilter::Sandbox,
            SourceFilter::Sandbox => SourceFilter::Gateway,
            SourceFilter::Gateway => SourceFilter::All,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SourceFilter::All => "all sources",
            SourceFilter::Sandbox => "sandbox",
            SourceFilter::Gateway => "gateway",
        }
    }
}

/// Levels, lowest first; the minimum-level toggle walks them.
pub const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

fn level_rank(level: &str) -> u8 {
    match level {
        "debug" | "trace" => 0,
        "warn" | "warning" => 2,
        "error" => 3,
        _ => 1,
    }
}

/// What a denied request was, to find its aggregated denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyKey {
    pub host: String,
    pub port: u32,
    pub binary: String,
    pub method: String,
    pub path: String,
}

impl DenyKey {
    pub fn matches(&self, d: &pb::Denial) -> bool {
        d.host == self.host
            && d.port == self.port
            && d.binary == self.binary
            && (d.method.is_empty() || (d.method == self.method && d.path == self.path))
    }
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub kind: LineKind,
    /// `HH:MM:SS.mmm`, shown when timestamps are on.
    pub time: String,
    pub gateway: bool,
    pub level: u8,
    /// The line without its time.
    pub text: String,
    pub deny: Option<DenyKey>,
}

impl LogLine {
    pub fn from_event(e: &pb::Event) -> LogLine {
        let kind = match (e.action.as_str(), e.level.as_str()) {
            ("deny", _) => LineKind::Deny,
            ("allow", _) => LineKind::Allow,
            (_, "error") => LineKind::Error,
            (_, "warn") => LineKind::Warn,
            _ => LineKind::Info,
        };
        let full = openshell_proto::event::to_line(e);
        let time = e.time.get(11..23).unwrap_or(&e.time).to_string();
        let text = full
            .strip_prefix(time.as_str())
            .map(|t| t.trim_start().to_string())
            .unwrap_or(full);
        let deny = (kind == LineKind::Deny && e.kind == "network").then(|| DenyKey {
            host: e.host.clone(),
            port: e.port,
            binary: e.binary.clone(),
            method: e.method.clone(),
            path: e.path.clone(),
        });
        LogLine {
            kind,
            time,
            gateway: e.source == "gateway",
            level: level_rank(&e.level),
            text,
            deny,
        }
    }
}

/// The log tab: history plus toggles.
#[derive(Debug, Clone)]
pub struct LogView {
    pub lines: VecDeque<LogLine>,
    /// Lines that arrived while paused, shown on resume (bounded like the history).
    pub held: VecDeque<LogLine>,
    /// Shown lines from the bottom; 0 follows new lines.
    pub scroll: usize,
    pub filter: String,
    pub source: SourceFilter,
    /// Index into [`LEVELS`] of the lowest level shown.
    pub min_level: u8,
    pub deny_only: bool,
    pub paused: bool,
    pub wrap: bool,
    pub timestamps: bool,
    pub last_seq: u64,
    /// Id of the next line kept; the first kept line's id is `next_id - lines.len()`.
    next_id: u64,
    /// Ids of the kept lines the filter and toggles let through, oldest first: kept up to
    /// date as lines arrive and leave, rebuilt by [`LogView::refilter`], so a frame costs the
    /// screen's height even when the filter matches one line in a hundred thousand.
    shown: VecDeque<u64>,
}

impl Default for LogView {
    fn default() -> Self {
        LogView {
            lines: VecDeque::new(),
            held: VecDeque::new(),
            scroll: 0,
            filter: String::new(),
            source: SourceFilter::All,
            min_level: 0,
            deny_only: false,
            paused: false,
            wrap: false,
            timestamps: true,
            last_seq: 0,
            next_id: 0,
            shown: VecDeque::new(),
        }
    }
}

impl LogView {
    pub fn push_events(&mut self, events: &[pb::Event]) {
        for e in events {
            // A reconnected stream replays what we already have.
            if e.seq != 0 && e.seq <= self.last_seq {
                continue;
            }
            self.last_seq = self.last_seq.max(e.seq);
            let line = LogLine::from_event(e);
            if self.paused {
                if self.held.len() >= LOG_HISTORY {
                    self.held.pop_front();
                }
                self.held.push_back(line);
                continue;
            }
            let shown = self.keep(line);
            if self.scroll > 0 && shown {
                // Keep the same lines on screen while scrolled back.
                self.scroll += 1;
            }
        }
    }

    /// Appends a line (dropping the oldest beyond the bound); true when it is shown.
    fn keep(&mut self, line: LogLine) -> bool {
        if self.lines.len() >= LOG_HISTORY {
            self.lines.pop_front();
            let first = self.next_id - self.lines.len() as u64 - 1;
            if self.shown.front() == Some(&first) {
                self.shown.pop_front();
            }
        }
        let shown = self.shows(&line);
        if shown {
            self.shown.push_back(self.next_id);
        }
        self.lines.push_back(line);
        self.next_id += 1;
        shown
    }

    /// Recomputes which lines are shown, after the filter or a toggle changed.
    pub fn refilter(&mut self) {
        let first = self.next_id - self.lines.len() as u64;
        let shown: VecDeque<u64> = self
            .lines
            .iter()
            .zip(first..)
            .filter(|(l, _)| self.shows(l))
            .map(|(_, id)| id)
            .collect();
        self.shown = shown;
        self.scroll = self.scroll.min(self.max_scroll());
    }

    /// Sets the text filter.
    pub fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_string();
        self.scroll = 0;
        self.refilter();
    }

    /// Pauses, or resumes and appends what arrived meanwhile.
    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused {
            for line in std::mem::take(&mut self.held) {
                self.keep(line);
            }
        }
    }

    /// Whether the toggles and the filter let this line through.
    pub fn shows(&self, l: &LogLine) -> bool {
        let source_ok = match self.source {
            SourceFilter::All => true,
            SourceFilter::Sandbox => !l.gateway,
            SourceFilter::Gateway => l.gateway,
        };
        source_ok
            && l.level >= self.min_level
            && (!self.deny_only || l.kind == LineKind::Deny)
            && (self.filter.is_empty() || contains_ignore_case(&l.text, &self.filter))
    }

    fn line(&self, id: u64) -> Option<&LogLine> {
        let first = self.next_id - self.lines.len() as u64;
        id.checked_sub(first)
            .and_then(|i| self.lines.get(usize::try_from(i).ok()?))
    }

    /// Up to `n` shown lines ending `scroll` shown lines before the newest, oldest first.
    pub fn window(&self, n: usize) -> Vec<&LogLine> {
        let mut out: Vec<&LogLine> = self
            .shown
            .iter()
            .rev()
            .skip(self.scroll)
            .take(n)
            .filter_map(|id| self.line(*id))
            .collect();
        out.reverse();
        out
    }

    /// The newest denied request at or above the bottom of the view.
    pub fn deny_in_view(&self) -> Option<&DenyKey> {
        self.shown
            .iter()
            .rev()
            .skip(self.scroll)
            .filter_map(|id| self.line(*id))
            .find_map(|l| l.deny.as_ref())
    }

    /// The number of shown lines.
    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }

    /// The largest useful scroll: the number of shown lines minus one.
    pub fn max_scroll(&self) -> usize {
        self.shown.len().saturating_sub(1)
    }

    pub fn scroll_by(&mut self, delta: isize) {
        let max = self.max_scroll();
        self.scroll = self.scroll.saturating_add_signed(delta).min(max);
    }

    /// The toggles in effect, for the title ("sandbox · warn+ · denials only · paused").
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if self.source != SourceFilter::All {
            parts.push(self.source.label().to_string());
        }
        if self.min_level > 0 {
            parts.push(format!("{}+", LEVELS[usize::from(self.min_level)]));
        }
        if self.deny_only {
            parts.push("denials only".into());
        }
        if self.paused {
            parts.push(format!("paused, {} new", self.held.len()));
        } else if self.scroll > 0 {
            parts.push(format!("{} lines back", self.scroll));
        }
        parts.join(" · ")
    }
}

/// Case-insensitive substring search without allocating per line for ASCII needles.
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let n = needle.as_bytes();
        hay.as_bytes()
            .windows(n.len())
            .any(|w| w.eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(&needle.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, source: &str, level: &str, action: &str) -> pb::Event {
        pb::Event {
            seq,
            time: "2026-11-25T10:00:00.123Z".into(),
            sandbox: "a".into(),
            source: source.into(),
            level: level.into(),
            kind: "network".into(),
            action: action.into(),
            host: "example.com".into(),
            port: 443,
            binary: "/usr/bin/curl".into(),
            ..Default::default()
        }
    }

    #[test]
    fn toggles_narrow_the_view() {
        let mut v = LogView::default();
        v.push_events(&[
            ev(1, "sandbox", "info", "allow"),
            ev(2, "sandbox", "warn", "deny"),
            ev(3, "gateway", "info", ""),
            ev(4, "sandbox", "error", ""),
        ]);
        assert_eq!(v.window(10).len(), 4);
        v.deny_only = true;
        v.refilter();
        assert_eq!(v.window(10).len(), 1);
        v.deny_only = false;
        v.source = SourceFilter::Gateway;
        v.refilter();
        assert_eq!(v.window(10).len(), 1);
        v.source = SourceFilter::All;
        v.min_level = 2;
        v.refilter();
        assert_eq!(v.window(10).len(), 2);
        v.set_filter("NOPE");
        assert_eq!(v.window(10).len(), 0);
        v.set_filter("");
        v.push_events(&[ev(5, "sandbox", "error", "")]);
        assert_eq!(
            v.window(10).len(),
            3,
            "new lines are filtered as they arrive"
        );
        assert_eq!(v.describe(), "warn+");
        let line = &v.window(10)[0];
        assert_eq!(line.time, "10:00:00.123");
        assert!(!line.text.contains("10:00"), "{}", line.text);
    }

    #[test]
    fn pause_holds_lines_until_resume_and_replays_are_dropped() {
        let mut v = LogView::default();
        v.push_events(&[ev(1, "sandbox", "info", "allow")]);
        v.toggle_pause();
        v.push_events(&[
            ev(2, "sandbox", "info", "allow"),
            ev(1, "sandbox", "info", "allow"),
        ]);
        assert_eq!(v.lines.len(), 1);
        assert_eq!(v.held.len(), 1);
        assert!(v.describe().contains("paused, 1 new"));
        v.toggle_pause();
        assert_eq!(v.lines.len(), 2);
    }

    #[test]
    fn the_deny_in_view_follows_the_scroll() {
        let mut v = LogView::default();
        let mut d1 = ev(1, "sandbox", "warn", "deny");
        d1.host = "one.test".into();
        let mut d2 = ev(3, "sandbox", "warn", "deny");
        d2.host = "two.test".into();
        v.push_events(&[d1, ev(2, "sandbox", "info", "allow"), d2]);
        assert_eq!(v.deny_in_view().map(|k| k.host.as_str()), Some("two.test"));
        v.scroll = 1;
        assert_eq!(v.deny_in_view().map(|k| k.host.as_str()), Some("one.test"));
    }

    #[test]
    fn history_is_bounded() {
        let mut v = LogView::default();
        let batch: Vec<pb::Event> = (1..=(LOG_HISTORY as u64 + 10))
            .map(|i| ev(i, "sandbox", "info", "allow"))
            .collect();
        v.push_events(&batch);
        assert_eq!(v.lines.len(), LOG_HISTORY);
        assert_eq!(v.shown_len(), LOG_HISTORY);
        let newest = v.window(1)[0].text.clone();
        v.deny_only = true;
        v.refilter();
        assert_eq!(v.shown_len(), 0);
        v.deny_only = false;
        v.refilter();
        assert_eq!(v.window(1)[0].text, newest);
    }
}
