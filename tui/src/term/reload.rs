//! Live reload of the user's theme and keymap files (`$XDG_CONFIG_HOME/openshell/themes/` and
//! `keymaps/`): a [`ConfigWatch`] watches them with notify and reports the active theme or
//! keymap again whenever its file's content changes; the event loop swaps it in and redraws.
//!
//! The directories may not exist yet: the nearest existing ancestor is watched until they
//! appear, and the watches are re-armed after every event. Events only nudge; what changed is
//! decided by comparing the files' text with what was last loaded, so editors' bursts of
//! events (truncate, write, rename) and unrelated files cost a read and nothing more.

use super::keymap::{self, Keymap};
use super::state::State;
use super::theme::{self, Theme};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// A theme or keymap read again after its file changed; `Err` is for the status line, and
/// the one in use stays.
#[derive(Debug)]
pub enum Reload {
    Theme(Result<Theme, String>),
    Keymap(Result<Keymap, String>),
}

/// Watches the active theme's and keymap's files.
pub struct ConfigWatch {
    dir: PathBuf,
    theme: String,
    keymap: String,
    watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
    nudges: mpsc::UnboundedReceiver<()>,
    /// The files' text when last loaded (None: absent or unreadable).
    theme_text: Option<String>,
    keymap_text: Option<String>,
}

impl ConfigWatch {
    /// Starts watching `<dir>/themes/THEME.yaml` and `<dir>/keymaps/KEYMAP.yaml`. What they
    /// hold now is the baseline: call this before loading them, so no edit falls in between.
    /// Follows another theme (chosen in `:themes`) from now on.
    pub fn set_theme(&mut self, name: &str) {
        self.theme = name.to_string();
    }

    pub fn start(dir: &Path, theme: &str, keymap: &str) -> notify::Result<ConfigWatch> {
        let (tx, nudges) = mpsc::unbounded_channel();
        // Runs on notify's thread; the loop only needs to know that something happened.
        let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            let _ = tx.send(());
        })?;
        let mut w = ConfigWatch {
            dir: dir.to_path_buf(),
            theme: theme.to_string(),
            keymap: keymap.to_string(),
            watcher,
            watched: Vec::new(),
            nudges,
            theme_text: None,
            keymap_text: None,
        };
        w.theme_text = read(&w.theme_path());
        w.keymap_text = read(&w.keymap_path());
        w.rearm()?;
        Ok(w)
    }

    fn theme_path(&self) -> PathBuf {
        self.dir.join("themes").join(format!("{}.yaml", self.theme))
    }

    fn keymap_path(&self) -> PathBuf {
        self.dir
            .join("keymaps")
            .join(format!("{}.yaml", self.keymap))
    }

    /// The directories to watch: those of the files and the config dir when they exist, and
    /// while the config dir does not, its nearest existing ancestor (to see it appear).
    fn wanted(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [
            self.dir.join("themes"),
            self.dir.join("keymaps"),
            self.dir.clone(),
        ]
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
        if !self.dir.is_dir()
            && let Some(a) = self.dir.ancestors().skip(1).find(|a| a.is_dir())
        {
            v.push(a.to_path_buf());
        }
        v
    }

    fn rearm(&mut self) -> notify::Result<()> {
        let wanted = self.wanted();
        for old in std::mem::take(&mut self.watched) {
            if wanted.contains(&old) {
                self.watched.push(old);
            } else {
                // Gone already when the directory was removed; nothing to undo then.
                let _ = self.watcher.unwatch(&old);
            }
        }
        for d in wanted {
            if !self.watched.contains(&d) {
                self.watcher.watch(&d, RecursiveMode::NonRecursive)?;
                self.watched.push(d);
            }
        }
        Ok(())
    }

    /// Waits until the active theme's or keymap's file has changed, and returns it read
    /// again. Cancel-safe: everything after the first await is synchronous, so it can sit in
    /// a `select!` beside busier branches.
    pub async fn next(&mut self) -> Vec<Reload> {
        loop {
            if self.nudges.recv().await.is_none() {
                // The watcher's thread is gone: nothing will change any more.
                return std::future::pending().await;
            }
            while self.nudges.try_recv().is_ok() {}
            // A directory that just appeared may already hold the file: the text comparison
            // below catches it whether or not its own event came.
            if let Err(e) = self.rearm() {
                tracing::debug!("re-arming the config watch: {e}");
            }
            let out = self.changed();
            if !out.is_empty() {
                return out;
            }
        }
    }

    /// What changed since the last look, read again.
    fn changed(&mut self) -> Vec<Reload> {
        let mut out = vec![];
        let text = read(&self.theme_path());
        if text != self.theme_text {
            self.theme_text = text;
            out.push(Reload::Theme(self.load_theme()));
        }
        let text = read(&self.keymap_path());
        if text != self.keymap_text {
            self.keymap_text = text;
            out.push(Reload::Keymap(self.load_keymap()));
        }
        out
    }

    fn load_theme(&self) -> Result<Theme, String> {
        let path = self.theme_path();
        match &self.theme_text {
            Some(text) => {
                let base = Theme::builtin(&self.theme).unwrap_or_else(Theme::default_theme);
                theme::parse(&self.theme, text, Some(&base))
                    .map_err(|e| format!("theme {}: {e}; keeping the theme in use", path.display()))
            }
            // Removed (or unreadable): what `--theme` gives without the file.
            None => match Theme::load(Some(&self.dir), &self.theme) {
                (t, None) => Ok(t),
                (_, Some(e)) => Err(format!("{e}; keeping the theme in use")),
            },
        }
    }

    fn load_keymap(&self) -> Result<Keymap, String> {
        let path = self.keymap_path();
        match &self.keymap_text {
            Some(text) => {
                let base = Keymap::builtin(&self.keymap).unwrap_or_else(Keymap::default_keymap);
                keymap::parse(&self.keymap, text, Some(&base)).map_err(|e| {
                    format!("keymap {}: {e}; keeping the keymap in use", path.display())
                })
            }
            None => match Keymap::load(Some(&self.dir), &self.keymap) {
                (k, None) => Ok(k),
                (_, Some(e)) => Err(format!("{e}; keeping the keymap in use")),
            },
        }
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Swaps reloaded files in; says so, or why not, in the status line.
pub fn apply(reloads: Vec<Reload>, state: &mut State, theme: &mut Theme, keymap: &mut Keymap) {
    for r in reloads {
        match r {
            Reload::Theme(Ok(t)) => {
                state.info(format!("theme {} reloaded", t.name));
                *theme = t;
            }
            Reload::Keymap(Ok(k)) => {
                state.info(format!("keymap {} reloaded", k.name));
                *keymap = k;
            }
            Reload::Theme(Err(e)) | Reload::Keymap(Err(e)) => state.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::{Color, Style};
    use std::time::Duration;

    /// The next reload, waiting at most a few seconds (notify delivers within milliseconds).
    async fn next(w: &mut ConfigWatch) -> Vec<Reload> {
        tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("a reload within 10 s")
    }

    /// Saves like most editors do (a new file renamed over the old), so no reader sees it half
    /// written.
    fn save(path: &Path, text: &str) {
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).expect("test fixture");
        std::fs::rename(&tmp, path).expect("test fixture");
    }

    #[tokio::test]
    async fn edited_theme_is_reloaded_and_a_bad_edit_keeps_the_good_one() {
        let dir = tempfile::tempdir().expect("test fixture");
        let themes = dir.path().join("themes");
        std::fs::create_dir_all(&themes).expect("test fixture");
        let file = themes.join("default.yaml");
        std::fs::write(&file, "styles:\n  deny: { fg: magenta }\n").expect("test fixture");
        let mut w = ConfigWatch::start(dir.path(), "default", "default").expect("watch");
        let (mut theme, err) = Theme::load(Some(dir.path()), "default");
        assert_eq!(err, None);
        let mut keymap = Keymap::default_keymap();
        let mut state = State::new("sock", "0");

        save(&file, "styles:\n  deny: { fg: cyan }\n");
        let r = next(&mut w).await;
        apply(r, &mut state, &mut theme, &mut keymap);
        assert_eq!(theme.style("deny"), Style::default().fg(Color::Cyan));
        let status = state.status.clone().expect("a status");
        assert!(!status.error, "{status:?}");
        assert!(status.text.contains("reloaded"), "{status:?}");

        save(&file, "styles:\n  deny: { fg: not-a-colour }\n");
        let r = next(&mut w).await;
        apply(r, &mut state, &mut theme, &mut keymap);
        let status = state.status.clone().expect("a status");
        assert!(status.error, "{status:?}");
        assert!(status.text.contains("not-a-colour"), "{status:?}");
        assert!(status.text.contains("keeping"), "{status:?}");
        assert_eq!(theme.style("deny"), Style::default().fg(Color::Cyan));

        // Removing the file goes back to the built-in.
        std::fs::remove_file(&file).expect("test fixture");
        let r = next(&mut w).await;
        apply(r, &mut state, &mut theme, &mut keymap);
        assert_eq!(theme.style("deny"), Theme::default_theme().style("deny"));
    }

    #[tokio::test]
    async fn keymap_in_a_directory_that_appears_later() {
        let dir = tempfile::tempdir().expect("test fixture");
        // Not even the config dir exists yet.
        let config = dir.path().join("openshell");
        let mut w = ConfigWatch::start(&config, "default", "vim").expect("watch");
        let mut theme = Theme::default_theme();
        let mut keymap = Keymap::builtin("vim").expect("test fixture");
        let mut state = State::new("sock", "0");
        // mkdir -p, then the file: the watches follow each directory as it appears.
        std::fs::create_dir_all(config.join("keymaps")).expect("test fixture");
        save(
            &config.join("keymaps/vim.yaml"),
            "bindings:\n  allow: [A]\n",
        );
        loop {
            let r = next(&mut w).await;
            apply(r, &mut state, &mut theme, &mut keymap);
            if keymap.hint(keymap::Action::Allow) == "A" {
                break;
            }
        }
        assert_eq!(keymap.name, "vim");
        assert!(!state.status.expect("a status").error);
    }
}
