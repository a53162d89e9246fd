//! Terminal printing shared by the commands: text from the audit trail
//! made safe to show, and JSON output.

use nadir_contract::findings::{FindingKind, FindingsSummary, Severity};
use nadir_pipeline::report::RunFigures;

/// Text from the audit trail can come from a capture (keys, labels): no
/// control characters reach the terminal.
pub fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Prints `value` as pretty JSON on one stdout write (the `--json` output).
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A figure to four decimals, or `-` when there is none.
pub fn figure(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(|x| format!("{x:.4}"))
        .unwrap_or_else(|| "-".into())
}

/// The comparison table `nadir analyze` and `nadir status` print.
pub fn print_comparison(summary: &RunFigures) {
    println!(
        "{:<34} {:>8} {:>8} {:>10}",
        "model", "flagged", "ROC-AUC", "avg prec"
    );
    for d in &summary.detectors {
        println!(
            "{:<34} {:>8} {:>8} {:>10}",
            d.name,
            d.flagged,
            figure(d.roc_auc),
            figure(d.average_precision)
        );
    }
}

/// The ranked findings of a run: counts by kind, then the first ten with
/// their explanations (text from a capture, made safe to show).
pub fn print_findings(findings: &FindingsSummary) {
    let kinds: Vec<String> = findings
        .by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "findings {} ({}); {} flagged flows among their evidence",
        findings.findings,
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        },
        findings.flagged_flows_in_findings
    );
    for (rank, f) in findings.top.iter().enumerate() {
        println!(
            "{}",
            finding_line(rank + 1, f.severity, f.score, f.kind, &f.src, &f.peer)
        );
        println!("     {}", shown(&f.explanation));
    }
}

/// A ranked finding in one line (text from a capture made safe to show).
pub fn finding_line(
    rank: usize,
    severity: Severity,
    score: f64,
    kind: FindingKind,
    src: &str,
    peer: &str,
) -> String {
    format!(
        "{rank:>3}. {:<8} {score:.2}  {:<15} {} -> {}",
        severity.name(),
        kind.name(),
        shown(src),
        shown(peer)
    )
}
