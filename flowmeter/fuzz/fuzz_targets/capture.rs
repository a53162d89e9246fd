//! Any bytes as a capture: the flow meter returns flows or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nadir_flowmeter::flows_from_capture(data, nadir_flowmeter::MeterConfig::default(), |_| {});
});
