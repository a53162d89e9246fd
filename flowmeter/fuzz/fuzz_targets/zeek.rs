//! Any text as a Zeek conn.log, both encodings: records or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = nadir_flowmeter::zeek::flows_from_conn_log(&text, false, 60_000_000_000);
    let _ = nadir_flowmeter::zeek::flows_from_conn_log(&text, true, 60_000_000_000);
});
