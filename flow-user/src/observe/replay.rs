//! Recorded observations played back in order: the pipeline's tests run on these.

use std::collections::VecDeque;

use anyhow::{anyhow, Result};

use super::{Mode, Observation, Observer};

/// An observer that returns prepared observations, one per call.
pub struct Replay {
    observations: VecDeque<Observation>,
    mode: Mode,
    payload: bool,
}

impl Replay {
    pub fn new(mode: Mode, observations: impl IntoIterator<Item = Observation>) -> Replay {
        Replay {
            observations: observations.into_iter().collect(),
            mode,
            payload: mode == Mode::Ebpf,
        }
    }
}

impl Observer for Replay {
    fn observe(&mut self) -> Result<Observation> {
        self.observations
            .pop_front()
            .ok_or_else(|| anyhow!("the recording has no more observations"))
    }

    fn mode(&self) -> Mode {
        self.mode
    }

    fn describe(&self) -> String {
        format!(
            "replaying {} recorded observations",
            self.observations.len()
        )
    }

    fn captures_payload(&self) -> bool {
        self.payload
    }
}
