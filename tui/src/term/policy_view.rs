//! The policy tab: the highlighted buffer with problems marked on their lines, the diff against
//! the active revision, and the revision history.

use super::editor::{Mode, PolicyEditor};
use super::keymap::{Action, Keymap};
use super::state::{History, SandboxView, State};
use super::theme::Theme;
use super::ui::{block, selection};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

pub fn render(
    state: &State,
    v: &SandboxView,
    theme: &Theme,
    keymap: &Keymap,
    frame: &mut Frame,
    area: Rect,
) {
    if let Some(h) = &v.history {
        render_history(h, theme, keymap, frame, area);
        return;
    }
    let Some(e) = state.editors.get(&v.name) else {
        let msg = if v.policy_loading {
            " loading the active policy…"
        } else {
            " the policy could not be loaded (see the status line)"
        };
        frame.render_widget(Paragraph::new(msg).style(theme.style("label")), area);
        return;
    };
    let [info, body, problem] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_info(e, theme, keymap, frame, info);
    match e.mode {
        Mode::Diff => {
            let lines: Vec<Line> = diff_lines(&e.diff, theme)
                .into_iter()
                .skip(e.diff_scroll)
                .take(usize::from(body.height))
                .collect();
            frame.render_widget(Paragraph::new(lines), body);
        }
        Mode::View | Mode::Edit => render_buffer(e, theme, frame, body),
    }
    render_problem(e, theme, frame, problem);
}

/// One line above the buffer: revision, mode, edited, problem count, static changes.
fn render_info(e: &PolicyEditor, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    let label = theme.style("label");
    let mut spans = vec![Span::styled(
        format!(" revision {} ", e.base_revision),
        theme.style("value"),
    )];
    let mode = match e.mode {
        Mode::View => format!("view ({} to edit)", keymap.hint(Action::Edit)),
        Mode::Edit => format!(
            "EDITING ({} apply, {} leave)",
            keymap.hint(Action::Apply),
            keymap.hint(Action::Back)
        ),
        Mode::Diff => format!("diff ({} back)", keymap.hint(Action::Diff)),
    };
    spans.push(Span::styled(format!("· {mode} "), label));
    if e.dirty() {
        spans.push(Span::styled("· edited ", theme.style("dirty")));
    }
    if let Some(rev) = e.base_moved {
        spans.push(Span::styled(
            format!("· revision {rev} became active meanwhile; the diff is against it "),
            theme.style("warn"),
        ));
    }
    let errors = e.problems.iter().filter(|p| p.error).count();
    let warnings = e.problems.len() - errors;
    if errors > 0 {
        spans.push(Span::styled(
            format!("· {errors} error{} ", if errors == 1 { "" } else { "s" }),
            theme.style("error"),
        ));
    } else if e.dirty() {
        spans.push(Span::styled("· valid ", theme.style("allow")));
    }
    if warnings > 0 {
        spans.push(Span::styled(
            format!(
                "· {warnings} warning{} ",
                if warnings == 1 { "" } else { "s" }
            ),
            theme.style("warn"),
        ));
    }
    if !e.static_changes.is_empty() {
        spans.push(Span::styled(
            format!(
                "· static change ({}): a running sandbox refuses it ",
                e.static_changes.join(", ")
            ),
            theme.style("deny"),
        ));
    }
    if e.applying {
        spans.push(Span::styled("· applying… ", theme.style("status_info")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The problem on the cursor's line, else the first one.
fn render_problem(e: &PolicyEditor, theme: &Theme, frame: &mut Frame, area: Rect) {
    let row = e.textarea.cursor().0;
    let p = e.problems_on(row).next().or(e.first_problem());
    if let Some(p) = p {
        let style = theme.style(if p.error { "error" } else { "warn" });
        frame.render_widget(
            Paragraph::new(format!(" line {}:{}: {}", p.line, p.column, p.message)).style(style),
            area,
        );
    }
}

fn render_buffer(e: &PolicyEditor, theme: &Theme, frame: &mut Frame, area: Rect) {
    let lines = e.textarea.lines();
    let height = usize::from(area.height);
    let top = e.scroll_for(height);
    let (crow, ccol) = (e.textarea.cursor().0, e.textarea.cursor().1);
    let digits = lines.len().max(1).to_string().len();
    let gutter = digits + 3;
    let text_width = usize::from(area.width).saturating_sub(gutter).max(1);
    // Horizontal scroll only as far as the cursor needs.
    let left = (ccol + 1).saturating_sub(text_width);
    let editing = e.mode == Mode::Edit;
    let mut out = Vec::with_capacity(height);
    for (row, text) in lines.iter().enumerate().skip(top).take(height) {
        let mut problems = e.problems_on(row);
        let (mark, mstyle) = match problems.next() {
            Some(p) if p.error => ("●", theme.style("gutter_error")),
            Some(_) => ("▲", theme.style("gutter_warning")),
            None => (" ", theme.style("gutter")),
        };
        let num_style = if row == crow {
            theme.style("value")
        } else {
            theme.style("gutter")
        };
        let mut spans = vec![
            Span::styled(format!("{:>digits$} ", row + 1), num_style),
            Span::styled(mark, mstyle),
            Span::raw(" "),
        ];
        let tokens = e.tokens().get(row).map(Vec::as_slice).unwrap_or(&[]);
        let cursor = (editing && row == crow).then_some(ccol);
        spans.extend(styled_chars(text, tokens, left, text_width, cursor, theme));
        out.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(out), area);
}

/// The visible part of one line (`left` chars scrolled off, `width` chars shown) as styled
/// spans, with the cursor cell drawn in the cursor style.
fn styled_chars<'a>(
    text: &'a str,
    tokens: &[(std::ops::Range<usize>, super::highlight::Token)],
    left: usize,
    width: usize,
    cursor: Option<usize>,
    theme: &Theme,
) -> Vec<Span<'a>> {
    let mut spans = Vec::new();
    let style_at = |byte: usize| {
        tokens
            .iter()
            .find(|(r, _)| r.contains(&byte))
            .map(|(_, t)| theme.style(t.style_name()))
            .unwrap_or_else(|| theme.style("log"))
    };
    // Group consecutive characters of one style into a span.
    let mut run_start: Option<(usize, ratatui::style::Style)> = None;
    let mut last_end = 0;
    for (ci, (bi, ch)) in text.char_indices().enumerate().skip(left).take(width) {
        let style = if cursor == Some(ci) {
            theme.style("cursor")
        } else {
            style_at(bi)
        };
        match run_start {
            Some((_, s)) if s == style => {}
            Some((start, s)) => {
                spans.push(Span::styled(&text[start..bi], s));
                run_start = Some((bi, style));
            }
            None => run_start = Some((bi, style)),
        }
        last_end = bi + ch.len_utf8();
    }
    if let Some((start, s)) = run_start {
        spans.push(Span::styled(&text[start..last_end], s));
    }
    // A cursor past the end of the line is drawn on a blank cell.
    if let Some(c) = cursor
        && c >= text.chars().count()
        && c >= left
    {
        spans.push(Span::styled(" ", theme.style("cursor")));
    }
    spans
}

/// A unified diff, line by line in the diff styles.
pub fn diff_lines<'a>(diff: &'a str, theme: &Theme) -> Vec<Line<'a>> {
    diff.lines()
        .map(|l| {
            let style = if l.starts_with("+++") || l.starts_with("---") {
                theme.style("label")
            } else if l.starts_with('+') {
                theme.style("diff_add")
            } else if l.starts_with('-') {
                theme.style("diff_del")
            } else if l.starts_with("@@") {
                theme.style("diff_hunk")
            } else {
                theme.style("log")
            };
            Line::styled(l, style)
        })
        .collect()
}

fn render_history(h: &History, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    if h.loading && h.revisions.is_empty() {
        frame.render_widget(
            Paragraph::new(" loading the revision history…").style(theme.style("label")),
            area,
        );
        return;
    }
    let (list_area, diff_area) = match &h.diff {
        Some(_) => {
            let [a, b] =
                Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(area);
            (a, Some(b))
        }
        None => (area, None),
    };
    let header = Row::new(["REV", "STATUS", "AUTHOR", "CREATED", "SUMMARY"])
        .style(theme.style("table_header"));
    let rows = h.revisions.iter().map(|r| {
        let status = match openshell_proto::pb::RevisionStatus::try_from(r.status) {
            Ok(openshell_proto::pb::RevisionStatus::Loaded) => "enforced",
            Ok(openshell_proto::pb::RevisionStatus::Pending) => "pending",
            Ok(openshell_proto::pb::RevisionStatus::Failed) => "failed",
            Ok(openshell_proto::pb::RevisionStatus::Superseded) => "superseded",
            _ => "-",
        };
        let style = match status {
            "enforced" => theme.style("allow"),
            "failed" => theme.style("deny"),
            "pending" => theme.style("warn"),
            _ => theme.style("label"),
        };
        let summary = if r.error.is_empty() {
            r.summary.clone()
        } else {
            format!("{} ({})", r.summary, r.error)
        };
        Row::new(vec![
            Cell::from(r.revision.to_string()),
            Cell::from(status).style(style),
            Cell::from(r.author.clone()),
            Cell::from(r.created.get(..19).unwrap_or(&r.created).replace('T', " ")),
            Cell::from(summary),
        ])
        .style(theme.style("row"))
    });
    let title = Line::from(vec![
        Span::styled(" revisions ", theme.style("title")),
        Span::styled(keymap.hint(Action::Open), theme.style("footer_key")),
        Span::styled(" diff with the enforced one  ", theme.style("footer_desc")),
        Span::styled(keymap.hint(Action::Rollback), theme.style("footer_key")),
        Span::styled(" roll back ", theme.style("footer_desc")),
    ]);
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(11),
            Constraint::Fill(1),
            Constraint::Length(20),
            Constraint::Fill(3),
        ],
    )
    .header(header)
    .block(block(title, theme))
    .row_highlight_style(theme.style("row_selected"));
    frame.render_stateful_widget(
        table,
        list_area,
        &mut selection(h.revisions.len(), h.selected),
    );
    if let (Some(area), Some((rev, diff))) = (diff_area, &h.diff) {
        let title = Line::styled(
            format!(" revision {rev} against the enforced revision "),
            theme.style("title"),
        );
        let lines = if diff.is_empty() {
            vec![Line::styled(" identical", theme.style("label"))]
        } else {
            diff_lines(diff, theme)
        };
        frame.render_widget(Paragraph::new(lines).block(block(title, theme)), area);
    }
}
