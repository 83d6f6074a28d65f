//! What the kernel's refusals mean for this tool, in one line each.

use anyhow::anyhow;
use aya::{programs::ProgramError, EbpfError};

use super::rungs::Rung;

/// Why a better rung was not used.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    pub rung: Rung,
    pub reason: String,
}

/// Loading the object failed before any rung was tried.
pub(super) fn load_failed(err: EbpfError) -> anyhow::Error {
    let text = format!("{:#}", anyhow::Error::from(err));
    if text.contains("Operation not permitted") {
        anyhow!("loading the kernel program was refused: flow needs root or CAP_BPF+CAP_PERFMON")
    } else {
        anyhow!("loading the kernel program failed: {text}")
    }
}

/// Turns the kernel's bare errno into what it means for this tool.
pub(super) fn explain(err: ProgramError) -> anyhow::Error {
    // An empty verifier log adds nothing but noise to a refusal reason.
    let text = format!("{:#}", anyhow::Error::from(err)).replace(". Verifier output: : ", ": ");
    let hint = if text.contains("Operation not permitted") || text.contains("EPERM") {
        " (denied by the kernel's policy or missing CAP_BPF/CAP_PERFMON)"
    } else if text.contains("No such file or directory") {
        " (not available in this kernel)"
    } else {
        ""
    };
    anyhow!("{text}{hint}")
}

/// Every rung was refused: each one's reason, in ladder order.
pub(super) fn no_rung(refused: &[Refusal]) -> anyhow::Error {
    let reasons: Vec<String> = refused
        .iter()
        .map(|r| format!("{}: {}", r.rung, r.reason))
        .collect();
    anyhow!(
        "no rung of hooks could attach on this kernel ({})",
        reasons.join("; ")
    )
}
