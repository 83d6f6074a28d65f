//! Tracker tests over recorded observations.

use super::*;
