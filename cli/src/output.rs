//! Terminal printing shared by the commands: text from the audit trail
//! made safe to show, and JSON output.

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
