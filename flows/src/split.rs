//! Splitting a SILVER table: which flows are held out for evaluation, and
//! keeping the rows a caller chose.
//!
//! The split is recomputed from the RAW version and the flow id, never
//! stored (see [`held_out`]). It is not random sampling, nor a time or a
//! stratified split, and the share held out is the caller's to choose.

use polars::prelude::*;

use crate::table::{FlowError, FlowTable, parquet_error};

/// Whether a flow is in the held-out share of its partition: a fixed hash
/// of the partition's RAW version and the flow id, so training and
/// evaluation (and any rerun) agree on the split without storing it.
pub fn held_out(raw_version: &str, flow_id: u64, share: f64) -> bool {
    // FNV-1a over the version, then splitmix64 with the flow id.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in raw_version.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ flow_id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let uniform = (z >> 11) as f64 / (1u64 << 53) as f64;
    uniform < share
}

impl FlowTable {
    /// The rows where `keep` is true, in order.
    pub fn filter(&self, keep: &[bool]) -> Result<FlowTable, FlowError> {
        let mask = BooleanChunked::from_slice("keep".into(), keep);
        Ok(FlowTable {
            frame: self.frame.filter(&mask).map_err(parquet_error)?,
            features: self.features.clone(),
            labelled: self.labelled,
            text: self.text.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_out_share_is_stable_and_about_the_share_asked() {
        let held = (0..10_000)
            .filter(|i| held_out("20261125T000000Z-abcd", *i, 0.2))
            .count();
        assert!((1_800..2_200).contains(&held), "{held}");
        assert!((0..1000).all(|i| held_out("v", i, 0.3) == held_out("v", i, 0.3)));
        assert_ne!(
            (0..64).map(|i| held_out("a", i, 0.5)).collect::<Vec<_>>(),
            (0..64).map(|i| held_out("b", i, 0.5)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn filter_keeps_the_rows_asked_in_order() {
        let t = FlowTable::from_csv(b"a,label\n1,x\n2,y\n3,z\n").unwrap();
        let kept = t.filter(&[true, false, true]).unwrap();
        assert_eq!(kept.flow_ids(), [0, 2]);
        assert_eq!(kept.labels().unwrap(), [Some("x".into()), Some("z".into())]);
        assert_eq!(kept.features, t.features);
    }
}
