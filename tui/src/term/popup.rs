//! Popups over the main view: the yes/no prompt and the create-sandbox form.

use super::form::{CreateForm, Field};
use super::keymap::{Action, Keymap};
use super::state::Prompt;
use super::theme::Theme;
use super::ui::block;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

pub fn render_prompt(p: &Prompt, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    let popup = centred(area, 64, 6);
    let keys = Line::from(vec![
        Span::styled(
            format!(" {}", keymap.hint(Action::Confirm)),
            theme.style("footer_key"),
        ),
        Span::styled(" yes   ", theme.style("footer_desc")),
        Span::styled(keymap.hint(Action::Back), theme.style("footer_key")),
        Span::styled(" no ", theme.style("footer_desc")),
    ]);
    let text = vec![
        Line::styled(format!(" {}", p.question), theme.style("value")),
        Line::raw(""),
        keys,
    ];
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(
            block(Line::styled(" confirm ", theme.style("prompt")), theme)
                .style(theme.style("base")),
        ),
        popup,
    );
}

pub fn render_form(f: &CreateForm, theme: &Theme, keymap: &Keymap, frame: &mut Frame, area: Rect) {
    let popup = centred(area, 72, 22);
    let inner_h = usize::from(popup.height.saturating_sub(2));
    let field_style = |field: Field| {
        if f.field == field {
            theme.style("form_active")
        } else {
            theme.style("form_label")
        }
    };
    let cursor = |field: Field| if f.field == field { "▏" } else { "" };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(" name     ", field_style(Field::Name)),
            Span::styled(
                if f.name.is_empty() && f.field != Field::Name {
                    "(the gateway picks one)".to_string()
                } else {
                    format!("{}{}", f.name, cursor(Field::Name))
                },
                theme.style("value"),
            ),
        ]),
        Line::from(vec![
            Span::styled(" command  ", field_style(Field::Command)),
            Span::styled(
                if f.command.is_empty() && f.field != Field::Command {
                    "(the sandbox's default shell)".to_string()
                } else {
                    format!("{}{}", f.command, cursor(Field::Command))
                },
                theme.style("value"),
            ),
        ]),
        Line::styled(
            format!(
                " presets  ({} toggles; {} chosen)",
                keymap.hint(Action::Toggle),
                f.presets.iter().filter(|p| p.on).count()
            ),
            field_style(Field::Presets),
        ),
    ];
    // The preset list scrolls to keep its cursor visible.
    let room = inner_h.saturating_sub(lines.len() + 2).max(1);
    let first = f.preset_cursor.saturating_sub(room.saturating_sub(1));
    for (i, p) in f.presets.iter().enumerate().skip(first).take(room) {
        let here = f.field == Field::Presets && i == f.preset_cursor;
        let (box_, bstyle) = if p.on {
            ("[x]", theme.style("checkbox_on"))
        } else {
            ("[ ]", theme.style("form_label"))
        };
        let name_style = if here {
            theme.style("row_selected")
        } else {
            theme.style("value")
        };
        lines.push(Line::from(vec![
            Span::raw("   "),
            Span::styled(box_, bstyle),
            Span::raw(" "),
            Span::styled(format!("{:<22}", p.name), name_style),
            Span::styled(p.description.clone(), theme.style("label")),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(match &f.error {
        Some(e) => Line::styled(format!(" {e}"), theme.style("status_error")),
        None => Line::from(vec![
            Span::styled(
                format!(" {}", keymap.hint(Action::NextTab)),
                theme.style("footer_key"),
            ),
            Span::styled(" next field  ", theme.style("footer_desc")),
            Span::styled(keymap.hint(Action::Confirm), theme.style("footer_key")),
            Span::styled(" create  ", theme.style("footer_desc")),
            Span::styled(keymap.hint(Action::Back), theme.style("footer_key")),
            Span::styled(" cancel", theme.style("footer_desc")),
        ]),
    });
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            block(
                Line::styled(" create a sandbox ", theme.style("title")),
                theme,
            )
            .style(theme.style("base")),
        ),
        popup,
    );
}
