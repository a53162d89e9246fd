//! Terminal printing shared by the commands: text from the audit trail
//! made safe to show, and JSON output.

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
