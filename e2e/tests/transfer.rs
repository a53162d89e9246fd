//! Captures in and out of S3 on the real server: a file uploaded in parts
//! side by side and read back as ranged GETs side by side, the sha256
//! ingest learns without reading an object, and what becomes of a run when
//! that sha256 is false or the object is replaced while it is read.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use nadir_contract::layout::sha256_hex;
use nadir_contract::messages::Sha256Origin;
use nadir_e2e::World;
use nadir_store::{DigestRead, KnownSha256, ObjectInfo, Ranged, StoreError, Upload, Uploaded};
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes no two ranges of which are alike (a misplaced range shows).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn file_of(world: &World, name: &str, bytes: &[u8]) -> PathBuf {
    let path = world.logs.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn small_parts() -> Upload {
    Upload {
        multipart_above: 5 << 20,
        part_size: 5 << 20,
        parts_in_flight: 3,
    }
}

/// Stores the file at `path` as `key` in `raw`.
async fn upload(world: &World, key: &str, path: &std::path::Path, how: Upload) -> Uploaded {
    world
        .store
        .put_file(
            &world.config.buckets.raw,
            key,
            path,
            "application/octet-stream",
            how,
        )
        .await
        .unwrap()
}

/// What a HEAD of `key` in `raw` tells, with the sha256 S3 knows of it.
async fn known(world: &World, key: &str) -> (ObjectInfo, Option<KnownSha256>) {
    world
        .store
        .head_with_sha256(&world.config.buckets.raw, key)
        .await
        .unwrap()
}

/// Reads the object as ranged GETs, hashed beside the reader.
async fn read_back(
    world: &World,
    key: &str,
    etag: &str,
    size: u64,
    how: Ranged,
) -> (std::io::Result<(Vec<u8>, String, u64)>, Option<StoreError>) {
    let reader = world
        .store
        .read_ranges(&world.config.buckets.raw, key, etag, size, how)
        .hashed();
    let fault = reader.fault();
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        let (sha256, size) = reader.finish()?;
        Ok((bytes, sha256, size))
    })
    .await
    .unwrap();
    (read, fault.get().cloned())
}

#[tokio::test]
async fn a_file_goes_up_in_parts_and_comes_back_whole_in_ranges_with_its_sha256() {
    let world = World::new("transfer-parts").await;
    let raw = world.config.buckets.raw.clone();
    let bytes = noise((13 << 20) + 123, 7);
    let path = file_of(&world, "parts.bin", &bytes);
    let up = upload(&world, "parts.bin", &path, small_parts()).await;
    assert_eq!(up.parts, 3);
    assert_eq!(up.size, bytes.len() as u64);
    assert_eq!(up.sha256, sha256_hex(&bytes));
    assert!(up.etag.ends_with("-3"), "a multipart ETag: {}", up.etag);
    let (info, sha256) = known(&world, "parts.bin").await;
    assert_eq!((info.etag.as_str(), info.size), (up.etag.as_str(), up.size));
    assert_eq!(
        sha256,
        Some(KnownSha256 {
            hex: up.sha256.clone(),
            source: Sha256Origin::UploaderMetadata
        })
    );
    // Ranges that cut the parts anywhere, more of them in flight than parts.
    let how = Ranged {
        chunk: (1 << 20) + 7,
        in_flight: 4,
    };
    let (read, fault) = read_back(&world, "parts.bin", &up.etag, up.size, how).await;
    assert!(fault.is_none(), "{fault:?}");
    let (back, sha256, size) = read.unwrap();
    assert!(back == bytes, "the bytes read back differ from the file's");
    assert_eq!((sha256, size), (up.sha256.clone(), up.size));
    assert_eq!(
        world
            .store
            .get_head(&raw, "parts.bin", &up.etag, 100)
            .await
            .unwrap()[..],
        bytes[..100]
    );

    // A small file: one PUT whose sha256 the server checked.
    let small = noise(1000, 9);
    let path = file_of(&world, "small.bin", &small);
    let up = upload(&world, "small.bin", &path, Upload::default()).await;
    assert_eq!(up.parts, 1);
    assert_eq!(
        known(&world, "small.bin").await.1,
        Some(KnownSha256 {
            hex: sha256_hex(&small),
            source: Sha256Origin::S3Checksum
        })
    );
    // An object any other client stored: S3 knows no sha256 of it.
    world
        .store
        .put(
            &raw,
            "plain.bin",
            small.clone().into(),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(known(&world, "plain.bin").await.1, None);
}

#[tokio::test]
async fn an_object_replaced_while_it_is_read_is_a_failed_read_never_a_mixture() {
    let world = World::new("transfer-replaced").await;
    let raw = world.config.buckets.raw.clone();
    let first = noise(3 << 20, 1);
    let etag = world
        .store
        .put(&raw, "swap.bin", first.into(), "application/octet-stream")
        .await
        .unwrap();
    world
        .store
        .put(
            &raw,
            "swap.bin",
            noise(3 << 20, 2).into(),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let how = Ranged {
        chunk: 1 << 20,
        in_flight: 2,
    };
    let (read, fault) = read_back(&world, "swap.bin", &etag, 3 << 20, how).await;
    assert!(read.is_err());
    match fault {
        Some(StoreError::Changed { key, why, .. }) => {
            assert_eq!(key, "swap.bin");
            assert!(why.contains(&etag), "{why}");
        }
        other => panic!("expected a changed object, got {other:?}"),
    }
}

fn capture() -> Vec<u8> {
    let config = nadir_trafficgen::Config {
        hosts: 20,
        duration_s: 120,
        ..Default::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
    pcap
}

async fn ingest_metrics(world: &World, run_id: uuid::Uuid) -> Value {
    world
        .query(
            "SELECT metrics FROM ingestions WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0)
}

#[tokio::test]
async fn ingest_takes_the_sha256_s3_knows_and_transform_holds_every_byte_to_it() {
    let world = World::new("transfer-sha256").await;
    let _workers = world.spawn_all_with(&[("NADIR_DETECTORS", "isolation_forest")]);
    let raw = world.config.buckets.raw.clone();
    let pcap = capture();
    assert!(pcap.len() > 5 << 20, "{} bytes", pcap.len());
    let path = file_of(&world, "day.pcap", &pcap);

    // `nadir upload`: one PUT with the checksum the server checks.
    let out = world.cli(&["upload", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&sha256_hex(&pcap)), "{stdout}");
    let run_id: uuid::Uuid = stdout.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    let metrics = ingest_metrics(&world, run_id).await;
    assert_eq!(metrics["sha256_from"], "s3-checksum", "{metrics}");
    assert_eq!(metrics["sha256"], sha256_hex(&pcap).as_str());

    // In parts: the uploader's metadata.
    let up = upload(&world, "parts.pcap", &path, small_parts()).await;
    assert!(up.parts > 1);
    let run_id = nadir_contract::messages::object_run_id(&raw, "parts.pcap", &up.etag);
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(
        ingest_metrics(&world, run_id).await["sha256_from"],
        "uploader-metadata"
    );

    // A false sha256: ingest believes it, transform's read does not.
    let false_sha = sha256_hex(b"some other capture");
    let etag = world
        .store
        .put_with_metadata(
            &raw,
            "false.pcap",
            pcap.clone().into(),
            "application/octet-stream",
            &[("sha256", &false_sha)],
        )
        .await
        .unwrap();
    let run_id = nadir_contract::messages::object_run_id(&raw, "false.pcap", &etag);
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "failed", "{run:?}");
    assert_eq!(run.error_stage.as_deref(), Some("transform"));
    let error = run.error.unwrap();
    assert!(
        error.contains("false.pcap")
            && error.contains(&false_sha)
            && error.contains("stated by its uploader in x-amz-meta-sha256")
            && error.contains(&sha256_hex(&pcap)),
        "{error}"
    );
    // Nothing of it reached SILVER.
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM transformations WHERE run_id = $1 AND status = 'succeeded'",
                &[&run_id],
            )
            .await,
        0
    );
}
