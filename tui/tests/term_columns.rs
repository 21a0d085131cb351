//! The sandboxes table's CPU and MEM columns: what the driver reports, `-` when it does not.

use openshell::term::keymap::Keymap;
use openshell::term::state::{Msg, State};
use openshell::term::theme::Theme;
use openshell::term::ui;
use openshell_proto::pb;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn row_text(state: &State, name: &str) -> String {
    let mut term = Terminal::new(TestBackend::new(120, 12)).expect("test terminal");
    term.draw(|f| ui::render(state, &Theme::default_theme(), &Keymap::default_keymap(), f))
        .expect("draw");
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no row for {name}"))
}

#[test]
fn cpu_and_memory_columns() {
    let mut s = State::new("sock", "0.1.0");
    let sb = |name: &str, cpu: f64, mem: u64| pb::Sandbox {
        name: name.into(),
        phase: pb::Phase::Ready as i32,
        cpu_percent: cpu,
        memory_bytes: mem,
        ..Default::default()
    };
    s.msg(Msg::Sandboxes(vec![
        sb("busy", 42.4, 512 * 1024 * 1024),
        sb("idle", 0.5, 1536 * 1024 * 1024),
        sb("unknown", 0.0, 0),
    ]));
    let headers = row_text(&s, "NAME");
    assert!(
        headers.contains("CPU") && headers.contains("MEM"),
        "{headers}"
    );
    let busy = row_text(&s, "busy");
    assert!(busy.contains(" 42% ") && busy.contains(" 512M "), "{busy}");
    let idle = row_text(&s, "idle");
    assert!(idle.contains(" 0.5% ") && idle.contains(" 1.5G "), "{idle}");
    let unknown = row_text(&s, "unknown");
    assert!(
        unknown.trim_end_matches(['│', ' ']).ends_with("-     -"),
        "{unknown}"
    );
}
