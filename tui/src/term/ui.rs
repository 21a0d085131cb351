//! Rendering: `render(&State, &Theme, &Keymap, frame)` draws the screen from state alone.
//! Styles come from the theme by name and key labels from the keymap.

use super::keymap::{Action, Keymap};
use super::state::{Health, InputKind, LineKind, Page, SandboxView, State, Tab, age, phase_name};
use super::theme::Theme;
use super::{policy_view, popup};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Tabs, Wrap,
};

/// Draws the whole screen.
pub fn render(state: &State, theme: &Theme, keymap: &Keymap, frame: &mut Frame) {
    let lost = matches!(state.health, Health::Lost(_));
    let [header, banner, main, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(lost)),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Block::new().style(theme.style("base")), frame.area());
    render_header(state, theme, frame, header);
    if let Health::Lost(e) = &state.health {
        frame.render_widget(
            Paragraph::new(format!(" gateway lost: {e} — reconnecting…"))
                .style(theme.style("banner")),
            banner,
        );
    }
    match (&state.open, state.page) {
        (Some(v), _) => render_sandbox(state, v, theme, keymap, frame, main),
        (None, Page::Sandboxes) => render_home(state, theme, frame, main),
        (None, Page::Providers) => render_providers(state, theme, frame, main),
        (None, Page::Themes) => render_themes(state, theme, frame, main),
    }
    render_status(state, theme, frame, status);
    render_footer(state, theme, keymap, frame, footer);
    if let Some(f) = &state.form {
        popup::render_form(f, theme, keymap, frame, main);
    }
    if let Some(p) = &state.prompt {
        popup::render_prompt(p, theme, keymap, frame, main);
    }
    if state.help {
        render_help(state, theme, keymap, frame, main);
    }
}

fn render_header(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let label = theme.style("header_label");
    let (health, hstyle) = match &state.health {
        Health::Up => ("● healthy", theme.style("health_ok")),
        Health::Connecting => ("○ connecting", theme.style("header_label")),
        Health::Lost(_) => ("✕ lost", theme.style("health_bad")),
    };
    let mut spans = vec![
        Span::styled(" OpenShell ", theme.style("header")),
        Span::styled(format!("v{}", state.version), label),
        Span::styled("  gateway ", label),
        Span::styled(format!("unix://{}", state.socket), theme.style("header")),
    ];
    if !state.gateway_version.is_empty() && state.gateway_version != state.version {
        spans.push(Span::styled(
            format!(" (v{})", state.gateway_version),
            label,
        ));
    }
    spans.extend([
        Span::raw("  "),
        Span::styled(health, hstyle),
        Span::styled(format!("  sandboxes {}", state.sandboxes.len()), label),
    ]);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub(super) fn block<'a>(title: Line<'a>, theme: &Theme) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(theme.style("border"))
        .title(title)
}

pub(super) fn title_line<'a>(crumbs: &[&str], filter: &str, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled(
        format!(" {} ", crumbs.join(" › ")),
        theme.style("title"),
    )];
    if !filter.is_empty() {
        spans.push(Span::styled(format!("/{filter} "), theme.style("input")));
    }
    Line::from(spans)
}

fn phase_style(theme: &Theme, phase: &str) -> ratatui::style::Style {
    theme.style(match phase {
        "ready" => "phase_ready",
        "provisioning" => "phase_provisioning",
        "failed" => "phase_failed",
        _ => "phase_stopped",
    })
}

fn render_home(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let list = state.visible_sandboxes();
    let title = title_line(
        &[&format!("sandboxes ({})", list.len())],
        &state.filter,
        theme,
    );
    let header = Row::new([
        "NAME", "PHASE", "DRIVER", "REV", "AGE", "DENIALS", "CPU", "MEM",
    ])
    .style(theme.style("table_header"));
    let rows = list.iter().map(|s| {
        let phase = phase_name(s.phase);
        let rev = if s.acked_revision == s.policy_revision {
            s.policy_revision.to_string()
        } else {
            format!("{}→{}", s.acked_revision, s.policy_revision)
        };
        let denials = Cell::from(s.recent_denials.to_string()).style(if s.recent_denials > 0 {
            theme.style("deny")
        } else {
            theme.style("row")
        });
        Row::new(vec![
            Cell::from(s.name.clone()),
            Cell::from(phase).style(phase_style(theme, phase)),
            Cell::from(s.driver.clone()),
            Cell::from(rev),
            Cell::from(age(state.now, &s.created)),
            denials,
            Cell::from(cpu(s.cpu_percent)),
            Cell::from(bytes(s.memory_bytes)),
        ])
        .style(theme.style("row"))
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Length(13),
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .block(block(title, theme))
    .row_highlight_style(theme.style("row_selected"));
    frame.render_stateful_widget(table, area, &mut selection(list.len(), state.selected));
    if list.is_empty() {
        let msg = if state.sandboxes.is_empty() {
            "no sandboxes; `openshell sandbox create` makes one"
        } else {
            "no sandbox matches the filter"
        };
        let inner = area.inner(ratatui::layout::Margin::new(2, 2));
        frame.render_widget(Paragraph::new(msg).style(theme.style("label")), inner);
    }
}

fn render_providers(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let title = title_line(
        &[&format!("providers ({})", state.providers.len())],
        "",
        theme,
    );
    let header = Row::new(["NAME", "TYPE", "CREDENTIALS", "CONFIG", "CREATED"])
        .style(theme.style("table_header"));
    let rows = state.providers.iter().map(|p| {
        let keys = |m: &std::collections::HashMap<String, String>| {
            let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
            k.sort_unstable();
            if k.is_empty() {
                "-".to_string()
            } else {
                k.join(", ")
            }
        };
        Row::new(vec![
            Cell::from(p.name.clone()),
            Cell::from(p.r#type.clone()),
            Cell::from(keys(&p.credentials)),
            Cell::from(keys(&p.config)),
            Cell::from(age(state.now, &p.created)),
        ])
        .style(theme.style("row"))
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(block(title, theme))
    .row_highlight_style(theme.style("row_selected"));
    frame.render_stateful_widget(
        table,
        area,
        &mut selection(state.providers.len(), state.provider_selected),
    );
    if state.providers.is_empty() {
        let inner = area.inner(ratatui::layout::Margin::new(2, 2));
        frame.render_widget(
            Paragraph::new("no providers; `openshell provider create` adds one")
                .style(theme.style("label")),
            inner,
        );
    }
}

fn render_themes(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let title = title_line(&["themes"], "", theme);
    let rows = state.themes.iter().map(|t| {
        let mark = if *t == state.theme { "● " } else { "  " };
        Row::new(vec![Cell::from(format!("{mark}{t}"))]).style(theme.style("row"))
    });
    let table = Table::new(rows, [Constraint::Fill(1)])
        .header(Row::new(["THEME"]).style(theme.style("table_header")))
        .block(block(title, theme))
        .row_highlight_style(theme.style("row_selected"));
    let mut ts = TableState::default().with_selected(Some(state.theme_selected));
    frame.render_stateful_widget(table, area, &mut ts);
}

/// A table's state with row `selected` highlighted, or none when the table is empty.
pub(super) fn selection(rows: usize, selected: usize) -> TableState {
    TableState::default().with_selected((rows > 0).then_some(selected))
}

/// CPU use as the driver reports it; `-` when it does not (0).
fn cpu(percent: f64) -> String {
    match percent {
        p if !p.is_finite() || p <= 0.0 => "-".into(),
        p if p < 10.0 => format!("{p:.1}%"),
        p => format!("{p:.0}%"),
    }
}

/// Memory in the largest unit that keeps it short (`512M`, `1.5G`); `-` when unknown (0).
fn bytes(n: u64) -> String {
    if n == 0 {
        return "-".into();
    }
    let mut v = n as f64;
    for unit in ["B", "K", "M", "G"] {
        if v < 1024.0 {
            return if v < 10.0 && unit != "B" {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.0}{unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1}T")
}

fn render_sandbox(
    state: &State,
    v: &SandboxView,
    theme: &Theme,
    keymap: &Keymap,
    frame: &mut Frame,
    area: Rect,
) {
    let filter = if v.tab == Tab::Logs {
        v.logs.filter.as_str()
    } else {
        ""
    };
    let mut title = title_line(&["sandboxes", &v.name, v.tab.title()], filter, theme);
    if v.tab == Tab::Logs {
        let toggles = v.logs.describe();
        if !toggles.is_empty() {
            title.push_span(Span::styled(format!("[{toggles}] "), theme.style("dirty")));
        }
    }
    if let Some(e) = state.editors.get(&v.name)
        && e.dirty()
    {
        title.push_span(Span::styled("[policy edited] ", theme.style("dirty")));
    }
    let outer = block(title, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [tabs, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    let titles = Tab::ALL.iter().map(|t| match t {
        Tab::Denials => format!("{} ({})", t.title(), v.denials.len()),
        Tab::Policy if state.editors.get(&v.name).is_some_and(|e| e.dirty()) => {
            format!("{}*", t.title())
        }
        _ => t.title().to_string(),
    });
    frame.render_widget(
        Tabs::new(titles)
            .select(Tab::ALL.iter().position(|t| *t == v.tab))
            .style(theme.style("tab"))
            .highlight_style(theme.style("tab_active")),
        tabs,
    );
    match v.tab {
        Tab::Overview => render_overview(state, v, theme, frame, body),
        Tab::Policy => policy_view::render(state, v, theme, keymap, frame, body),
        Tab::Logs => render_logs(v, theme, frame, body),
        Tab::Denials => render_denials(v, theme, keymap, frame, body),
    }
}

fn render_overview(state: &State, v: &SandboxView, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(s) = state.sandboxes.iter().find(|s| s.name == v.name) else {
        frame.render_widget(
            Paragraph::new(format!(
                "{} is not (or no longer) listed by the gateway",
                v.name
            ))
            .style(theme.style("label")),
            area,
        );
        return;
    };
    let phase = phase_name(s.phase);
    let mut phase_spans = vec![Span::styled(phase, phase_style(theme, phase))];
    if !s.reason.is_empty() {
        phase_spans.push(Span::styled(
            format!(" ({})", s.reason),
            theme.style("value"),
        ));
    }
    let val = |t: String| vec![Span::styled(t, theme.style("value"))];
    let or_dash = |t: &str| {
        if t.is_empty() {
            "-".to_string()
        } else {
            t.to_string()
        }
    };
    let rows: Vec<(&str, Vec<Span>)> = vec![
        ("phase", phase_spans),
        ("driver", val(or_dash(&s.driver))),
        ("image", val(or_dash(&s.image))),
        (
            "policy",
            val(format!(
                "revision {} (enforced {})",
                s.policy_revision, s.acked_revision
            )),
        ),
        ("providers", val(or_dash(&s.providers.join(", ")))),
        ("command", val(or_dash(&s.command.join(" ")))),
        ("workdir", val(or_dash(&s.workdir))),
        (
            "created",
            val(format!(
                "{} ({} ago)",
                s.created,
                age(state.now, &s.created)
            )),
        ),
        (
            "denials",
            val(format!("{} in the last 5 min", s.recent_denials)),
        ),
    ];
    let lines: Vec<Line> = rows
        .into_iter()
        .map(|(k, mut vs)| {
            vs.insert(0, Span::styled(format!(" {k:<10} "), theme.style("label")));
            Line::from(vs)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn line_style(theme: &Theme, kind: LineKind) -> ratatui::style::Style {
    theme.style(match kind {
        LineKind::Deny => "deny",
        LineKind::Allow => "allow",
        LineKind::Warn => "warn",
        LineKind::Error => "error",
        LineKind::Info => "log",
    })
}

fn render_logs(v: &SandboxView, theme: &Theme, frame: &mut Frame, area: Rect) {
    let height = area.height as usize;
    let l = &v.logs;
    if l.lines.is_empty() {
        let msg = if l.paused {
            " paused: waiting for events…"
        } else {
            " waiting for events…"
        };
        frame.render_widget(Paragraph::new(msg).style(theme.style("label")), area);
        return;
    }
    let lines: Vec<Line> = l
        .window(height)
        .into_iter()
        .map(|line| {
            let style = line_style(theme, line.kind);
            if l.timestamps {
                Line::from(vec![
                    Span::styled(line.time.as_str(), theme.style("label")),
                    Span::raw(" "),
                    Span::styled(line.text.as_str(), style),
                ])
            } else {
                Line::styled(line.text.as_str(), style)
            }
        })
        .collect();
    if lines.is_empty() {
        frame.render_widget(
            Paragraph::new(" no line matches the filter and toggles").style(theme.style("label")),
            area,
        );
        return;
    }
    let width = usize::from(area.width.max(1));
    // Wrapped lines take more rows: keep the newest at the bottom.
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let mut p = Paragraph::new(Text::from(lines));
    if l.wrap {
        let over = rows.saturating_sub(height);
        p = p
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(over).unwrap_or(u16::MAX), 0));
    }
    frame.render_widget(p, area);
}

fn render_denials(v: &SandboxView, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    let (list_area, preview_area) = if v.preview.is_some() {
        let [a, b] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Fill(1)]).areas(area);
        (a, Some(b))
    } else {
        (area, None)
    };
    if v.denials.is_empty() {
        frame.render_widget(
            Paragraph::new(" no denials: nothing has been blocked").style(theme.style("label")),
            list_area,
        );
    } else {
        let header = Row::new(["ID", "COUNT", "DESTINATION", "BINARY", "REQUEST", "STATUS"])
            .style(theme.style("table_header"));
        let rows = v.denials.iter().map(|d| {
            let req = if d.method.is_empty() {
                String::new()
            } else {
                format!("{} {}", d.method, d.path)
            };
            let status_style = match d.status.as_str() {
                "approved" => theme.style("allow"),
                "rejected" => theme.style("label"),
                _ => theme.style("deny"),
            };
            Row::new(vec![
                Cell::from(d.id.clone()),
                Cell::from(d.count.to_string()),
                Cell::from(format!("{}:{}", d.host, d.port)),
                Cell::from(d.binary.clone()),
                Cell::from(req),
                Cell::from(d.status.clone()).style(status_style),
            ])
            .style(theme.style("row"))
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Fill(3),
                Constraint::Fill(2),
                Constraint::Fill(2),
                Constraint::Length(9),
            ],
        )
        .header(header)
        .row_highlight_style(theme.style("row_selected"));
        let mut ts = TableState::default().with_selected(Some(v.denial_selected));
        frame.render_stateful_widget(table, list_area, &mut ts);
    }
    if let (Some(area), Some(d)) = (preview_area, v.selected_denial()) {
        let title = Line::from(vec![
            Span::styled(format!(" allow denial {}: ", d.id), theme.style("title")),
            Span::styled(keymap.hint(Action::Confirm), theme.style("footer_key")),
            Span::styled(" apply  ", theme.style("footer_desc")),
            Span::styled(keymap.hint(Action::Back), theme.style("footer_key")),
            Span::styled(" cancel  ", theme.style("footer_desc")),
        ]);
        let mut title = title;
        title.push_span(Span::styled(
            keymap.hint(Action::Edit),
            theme.style("footer_key"),
        ));
        title.push_span(Span::styled(" edit first ", theme.style("footer_desc")));
        let lines: Vec<Line> = if v.preview_diff.is_empty() {
            d.proposal_yaml
                .lines()
                .map(|l| Line::styled(format!("+ {l}"), theme.style("preview")))
                .collect()
        } else {
            policy_view::diff_lines(&v.preview_diff, theme)
        };
        frame.render_widget(Paragraph::new(lines).block(block(title, theme)), area);
    }
}

fn render_status(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    if let Some(input) = &state.input {
        let prefix = match input.kind {
            InputKind::Filter => "/",
            InputKind::Command => ":",
        };
        frame.render_widget(
            Paragraph::new(format!("{prefix}{}▏", input.text)).style(theme.style("input")),
            area,
        );
        return;
    }
    if let Some(s) = &state.status {
        let style = theme.style(if s.error {
            "status_error"
        } else {
            "status_info"
        });
        frame.render_widget(Paragraph::new(format!(" {}", s.text)).style(style), area);
    }
}

fn render_footer(state: &State, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    let mut spans = vec![];
    for a in state.available() {
        if matches!(
            a,
            Action::Up | Action::Down | Action::PageUp | Action::PageDown
        ) {
            continue;
        }
        spans.push(Span::styled(
            format!(" {}", keymap.hint(a)),
            theme.style("footer_key"),
        ));
        spans.push(Span::styled(
            format!(" {} ", a.name()),
            theme.style("footer_desc"),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_help(state: &State, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    let w = area.width.min(72);
    let h = area.height.min(Action::ALL.len() as u16 + 4);
    let popup = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let here = {
        let mut s = state.clone();
        s.help = false;
        s.available()
    };
    let mut lines = vec![];
    for a in here
        .iter()
        .chain(Action::ALL.iter().filter(|a| !here.contains(a)))
    {
        let keys: Vec<String> = keymap.keys(*a).iter().map(|k| k.label()).collect();
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<16}", keys.join(" ")), theme.style("help_key")),
            Span::styled(format!("{:<10} ", a.name()), theme.style("help_key")),
            Span::styled(a.description(), theme.style("help_desc")),
        ]));
    }
    // Inside the border: what shows of the list, and where it starts. A short screen scrolls
    // (up/down) instead of cutting the list off.
    let rows = usize::from(h.saturating_sub(2));
    let total = lines.len();
    let end = total.saturating_sub(rows);
    state.help_end.set(end);
    let first = state.help_scroll.min(end);
    let shown = if total > rows {
        format!(
            " · {}-{} of {total} (↑↓)",
            first + 1,
            (first + rows).min(total)
        )
    } else {
        String::new()
    };
    let title = Line::styled(
        format!(" help · keymap {}{shown} ", keymap.name),
        theme.style("title"),
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((u16::try_from(first).unwrap_or(u16::MAX), 0))
            .block(block(title, theme).style(theme.style("base"))),
        popup,
    );
}
