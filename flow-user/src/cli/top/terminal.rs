//! The terminal while `flow top` draws on it: raw mode and the alternate screen, given back on
//! every way out — return, error (`Drop`), panic (ratatui's hook), and signals (the loop sees the
//! flag and returns).

use std::time::Duration;

use anyhow::{Context, Result};
use ratatui::{
    crossterm::event::{self, Event},
    DefaultTerminal, Frame,
};

pub struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    pub fn start() -> Result<Screen> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                // Raw mode may be on even though the alternate screen failed.
                let _ = ratatui::try_restore();
                Err(err).context("cannot take over the terminal")
            }
        }
    }

    pub fn draw(&mut self, render: impl FnOnce(&mut Frame)) -> Result<()> {
        self.terminal.draw(render)?;
        Ok(())
    }

    /// The next key or resize within `wait`, if any.
    pub fn next_event(&self, wait: Duration) -> Result<Option<Event>> {
        if event::poll(wait)? {
            return Ok(Some(event::read()?));
        }
        Ok(None)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        let _ = ratatui::try_restore();
    }
}
