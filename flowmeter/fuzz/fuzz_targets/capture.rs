//! Any bytes as a capture, read in place and streamed: the flow meter
//! returns flows or an error, never panics, and both reads agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nadir_flowmeter::{MeterConfig, Source, flows_from_capture};

fuzz_target!(|data: &[u8]| {
    let in_place = flows_from_capture(data, MeterConfig::default(), |_| {});
    let streamed = flows_from_capture(Source::reader(data), MeterConfig::default(), |_| {});
    match (in_place, streamed) {
        (Ok(a), Ok(b)) => assert!(a == b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("in place {a:?}, streamed {b:?}"),
    }
});
