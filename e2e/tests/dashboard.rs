//! The dashboard over a real pipeline run: the four workers turn a
//! generated capture (with HTML and script in its names and labels) into
//! scores, `nadir-dashboard` serves them with a role that may only read and
//! add feedback, and headless Chromium (`e2e/browser/dashboard.mjs`) opens
//! every page. What the pages show is checked against `scores.parquet`
//! read here on its own.

use std::process::Command;
use std::time::Duration;

use base64::Engine;

use nadir_contract::layout::ArtifactRef;
use nadir_e2e::World;
use nadir_trafficgen::{Attack, Names};
use polars::prelude::*;

const ATTACKER: &str = "198.51.100.66";
const SITE: &str = "<img src=x onerror=alert(1)>.evil.example";
const INTRANET: &str = "<svg onload=alert(2)>";
const TUNNEL: &str = "<b onmouseover=alert(3)>t</b>.example";
const LABEL: &str = "<script>alert(4)</script>";

fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A capture whose names and labels are hostile, and its ground truth.
fn hostile_capture() -> (Vec<u8>, Vec<u8>) {
    let config = nadir_trafficgen::Config {
        hosts: 30,
        duration_s: 120,
        sessions_per_host_minute: 20.0,
        attacks: [Attack::SynScan, Attack::DnsTunnel, Attack::SshBruteForce]
            .into_iter()
            .map(|a| (a, 1))
            .collect(),
        names: Names {
            sites: vec!["www.example.com".into(), SITE.into()],
            intranet_host: INTRANET.into(),
            tunnel_domain: TUNNEL.into(),
        },
        ..Default::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
    let truth = String::from_utf8(truth)
        .unwrap()
        .replace(",syn_scan\n", &format!(",{LABEL}\n"));
    assert!(truth.contains(LABEL));
    (pcap, truth.into_bytes())
}

#[tokio::test]
async fn the_dashboard_shows_a_real_run_to_a_browser() {
    let world = World::new("dashboard").await;
    let _workers = world.spawn_all();
    let (pcap, truth) = hostile_capture();
    world.drop_raw("hostile.pcap.labels.csv", truth).await;
    let (_, run_id) = world.drop_raw("hostile.pcap", pcap).await;
    let run = world.wait_run(run_id, Duration::from_secs(240)).await;
    assert_eq!(run.status, "succeeded", "{:?}", run.error);

    // The scores as eval wrote them, read here without the dashboard.
    let scores_ref: ArtifactRef =
        serde_json::from_value(run.report.as_ref().unwrap()["scores"].clone()).unwrap();
    let bytes = world
        .store
        .get(&scores_ref.bucket, &scores_ref.key)
        .await
        .unwrap();
    let scores = nadir_flows::table::read_parquet(&bytes).unwrap();
    let flagged_col = scores.column("flagged").unwrap().bool().unwrap().clone();
    let text_col = |name: &str| scores.column(name).unwrap().str().unwrap().clone();
    let (src, dst) = (text_col("src_ip"), text_col("dst_ip"));
    let names: Vec<StringChunked> = ["dns_query", "tls_sni", "http_host"]
        .iter()
        .map(|n| text_col(n))
        .collect();
    let flagged_rows: Vec<usize> = (0..scores.height())
        .filter(|i| flagged_col.get(*i) == Some(true))
        .collect();
    let flagged = flagged_rows.len();
    let of_attacker = flagged_rows
        .iter()
        .filter(|i| src.get(**i) == Some(ATTACKER) || dst.get(**i) == Some(ATTACKER))
        .count();
    assert!(
        of_attacker > 0 && of_attacker < flagged,
        "{of_attacker} of {flagged}"
    );
    // Hostile names that reached flagged flows (the pages list flagged flows).
    let hostile_names: Vec<&str> = [SITE, INTRANET, TUNNEL]
        .into_iter()
        .filter(|payload| {
            flagged_rows.iter().any(|i| {
                names
                    .iter()
                    .any(|c| c.get(*i).is_some_and(|n| n.contains(payload)))
            })
        })
        .collect();
    assert!(
        !hostile_names.is_empty(),
        "no flagged flow carries a hostile name; the test needs one"
    );
    // A flagged flow with the hostile label, shown on its own page.
    let (raw_version, flow_id, label) = (
        text_col("raw_version"),
        scores.column("flow_id").unwrap().u64().unwrap().clone(),
        text_col("label"),
    );
    let labelled = flagged_rows
        .iter()
        .find(|i| label.get(**i) == Some(LABEL))
        .expect("a flagged flow with the hostile label");
    let label_flow_path = format!(
        "/runs/{run_id}/flows/{}/{}",
        raw_version.get(*labelled).unwrap(),
        flow_id.get(*labelled).unwrap()
    );

    // The findings as eval wrote them, read here on their own.
    let report_ref: ArtifactRef =
        serde_json::from_value(run.report.as_ref().unwrap()["report"].clone()).unwrap();
    let report: serde_json::Value = serde_json::from_slice(
        &world
            .store
            .get(&report_ref.bucket, &report_ref.key)
            .await
            .unwrap(),
    )
    .unwrap();
    let findings_ref: ArtifactRef = serde_json::from_value(report["findings"].clone()).unwrap();
    let findings = nadir_flows::table::read_parquet(
        &world
            .store
            .get(&findings_ref.bucket, &findings_ref.key)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(findings.height() >= 3, "{findings}");

    // A role that may read and add feedback, nothing more.
    let role = format!("dashboard_{}", std::process::id());
    let password = uuid::Uuid::new_v4().simple().to_string();
    let admin = world.db.get().await.unwrap();
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD '{password}'"
        ))
        .await
        .unwrap();
    let granted = world.cli(&["grant-dashboard", &role]);
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    let url = &world.config.database_url;
    let at = url.rfind('@').unwrap();
    let role_url = format!("postgres://{role}:{password}{}", &url[at..]);
    {
        let client = nadir_db::connect(&role_url).await.unwrap();
        let denied = client
            .execute(
                "UPDATE pipeline_runs SET status = 'failed' WHERE run_id = $1",
                &[&run_id],
            )
            .await
            .unwrap_err();
        assert!(
            denied.to_string().contains("permission denied")
                || format!("{denied:?}").contains("permission denied"),
            "{denied:?}"
        );
        assert!(client.execute("DELETE FROM feedback", &[]).await.is_err());
    }

    // Without credentials the dashboard does not start, unless told so
    // and on loopback.
    let refused = Command::new(nadir_e2e::bin_dir().join("nadir-dashboard"))
        .env_clear()
        .envs(
            world
                .vars
                .iter()
                .filter(|(k, _)| k.starts_with("NADIR_S3_") || k.starts_with("NADIR_BUCKET_")),
        )
        .env("NADIR_DATABASE_URL", &role_url)
        .env("NADIR_DASHBOARD_ADDR", "0.0.0.0:0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("needs credentials"), "{said}");

    let user = "analyst-e2e";
    let dashboard_password = uuid::Uuid::new_v4().simple().to_string();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let dashboard = world.spawn_dashboard(
        &role_url,
        &[
            ("NADIR_DASHBOARD_USER", user),
            ("NADIR_DASHBOARD_PASSWORD", &dashboard_password),
            ("NADIR_DASHBOARD_TOKEN", &token),
            ("NADIR_DASHBOARD_TOKEN_NAME", "soar-e2e"),
        ],
    );
    assert_eq!(dashboard.http_get("/readyz").await.0, 200, "ready");
    let bearer = format!("Bearer {token}");
    let by_token = dashboard
        .http("GET", "/", &[("Authorization", bearer.as_str())], "")
        .await;
    assert_eq!(by_token.status, 200, "a named token opens the pages");
    let wrong = format!("Bearer {token}x");
    let by_wrong = dashboard
        .http("GET", "/", &[("Authorization", wrong.as_str())], "")
        .await;
    assert_eq!(by_wrong.status, 401);
    let anonymous = dashboard.http("GET", "/", &[], "").await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{dashboard_password}"))
    );
    let auth = [("Authorization", basic.as_str())];
    let get = |path: String| {
        let (dashboard, auth) = (&dashboard, &auth);
        async move { dashboard.http("GET", &path, auth, "").await }
    };

    // Exports agree with the scores file.
    let export = get(format!("/runs/{run_id}/anomalies.json")).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let export: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(export["total"], flagged);
    let ranked_by = export["ranked_by"].as_str().unwrap();
    let rank = export["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .position(|d| d["name"] == ranked_by)
        .unwrap();
    let first: Vec<f64> = export["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["scores"][rank].as_f64().unwrap())
        .collect();
    assert!(
        first.windows(2).all(|w| w[0] >= w[1]),
        "highest score first"
    );
    let filtered = get(format!(
        "/runs/{run_id}/anomalies.csv?host={ATTACKER}&sort=time&order=asc"
    ))
    .await;
    assert_eq!(filtered.status, 200);
    assert!(
        filtered
            .header("content-type")
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        filtered.body.lines().count(),
        of_attacker + 1,
        "header + rows"
    );
    assert!(
        !filtered.body.lines().skip(1).any(|l| l.starts_with('=')),
        "no formula cells"
    );

    // Untrusted text is escaped in the HTML itself.
    let scores_page = get(format!("/runs/{run_id}/scores")).await;
    assert_eq!(scores_page.status, 200);
    assert!(!scores_page.body.contains(LABEL));
    assert!(scores_page.body.contains(&escaped(LABEL)));
    assert!(
        scores_page
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    let label_page = get(label_flow_path.clone()).await;
    assert_eq!(label_page.status, 200);
    assert!(!label_page.body.contains(LABEL));
    assert!(label_page.body.contains(&escaped(LABEL)));
    for payload in &hostile_names {
        let page = get(format!(
            "/runs/{run_id}/anomalies?host={}",
            query_value(payload)
        ))
        .await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(payload), "{payload} unescaped");
        assert!(page.body.contains(&escaped(payload)), "{payload} not shown");
    }
    // A bad filter is named, not a failure.
    let bad = get(format!("/runs/{run_id}/anomalies?port=http")).await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("is not a port number"));

    // A form posted from another site is refused.
    let flow = &export["flows"][0];
    let feedback_path = format!(
        "/runs/{run_id}/flows/{}/{}/feedback",
        flow["raw_version"].as_str().unwrap(),
        flow["flow_id"]
    );
    let forged = dashboard
        .http(
            "POST",
            &feedback_path,
            &[
                auth[0],
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "verdict=false_positive&comment=forged&analyst=x",
        )
        .await;
    assert_eq!(forged.status, 403);
    let unnamed = dashboard
        .http(
            "POST",
            &feedback_path,
            &[
                auth[0],
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "verdict=false_positive&comment=no-origin",
        )
        .await;
    assert_eq!(unnamed.status, 403, "neither Origin nor Sec-Fetch-Site");

    // The browser.
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: scripts/test installs it (npm ci)",
        browser_dir.display()
    );
    let shots = std::env::var("NADIR_SCREENSHOT_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("nadir-screenshots")
            .display()
            .to_string()
    });
    let mut hostile: Vec<(String, &str)> = hostile_names
        .iter()
        .map(|p| {
            (
                format!("/runs/{run_id}/anomalies?host={}", query_value(p)),
                *p,
            )
        })
        .collect();
    hostile.push((format!("/runs/{run_id}/scores"), LABEL));
    hostile.push(("/?state=all&hidden=1".to_string(), TUNNEL));
    hostile.push((label_flow_path, LABEL));
    let expect = serde_json::json!({
        "run_id": run_id,
        "rows": scores.height(),
        "flagged": flagged,
        "filter_host": ATTACKER,
        "filtered": of_attacker,
        "findings": findings.height(),
        "planted": ["scan", "DNS tunnel", "brute force"],
        "hostile": hostile,
    });
    let output = Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .env(
            "DASHBOARD_URL",
            format!("http://127.0.0.1:{}", dashboard.metrics_port),
        )
        .env("DASHBOARD_USER", user)
        .env("DASHBOARD_PASSWORD", &dashboard_password)
        .env("EXPECT", expect.to_string())
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("running node (scripts/test installs Node.js)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "browser test failed:\n{log}\ndashboard log: {}",
        dashboard.log.display()
    );
    println!("{log}screenshots in {shots}");

    // The browser's verdict is in PostgreSQL, by the signed-in analyst,
    // where the next evaluation reads its labels.
    let verdicts = world
        .query(
            "SELECT verdict, analyst, comment, run_id FROM feedback
              WHERE comment LIKE 'checked by the browser test%'",
            &[],
        )
        .await;
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].get::<_, String>(0), "true_positive");
    assert_eq!(verdicts[0].get::<_, String>(1), user);
    assert!(
        verdicts[0]
            .get::<_, String>(2)
            .starts_with("checked by the browser test")
    );
    assert_eq!(verdicts[0].get::<_, Option<uuid::Uuid>>(3), Some(run_id));

    // The browser's triage and rule, by the signed-in analyst: the false
    // positive labelled its evidence flows benign in the same transaction.
    let triaged = world
        .query(
            "SELECT state, analyst, labelled, finding_id FROM finding_triage",
            &[],
        )
        .await;
    assert_eq!(triaged.len(), 1);
    assert_eq!(triaged[0].get::<_, String>(0), "false_positive");
    assert_eq!(triaged[0].get::<_, String>(1), user);
    let labelled: i32 = triaged[0].get(2);
    assert!(labelled > 0, "the false positive labelled its evidence");
    let finding_id: String = triaged[0].get(3);
    let benign = world
        .query(
            "SELECT count(*) FROM feedback WHERE verdict = 'false_positive' AND analyst = $1
               AND comment LIKE $2",
            &[&user, &format!("finding {finding_id}%")],
        )
        .await;
    assert_eq!(benign[0].get::<_, i64>(0), i64::from(labelled));
    let rules = world
        .query("SELECT owner, changed_by FROM suppression_rules", &[])
        .await;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].get::<_, String>(0), user);

    // The analyst is the credential's name, whatever the form says.
    let origin = format!("http://127.0.0.1:{}", dashboard.metrics_port);
    let by_script = dashboard
        .http(
            "POST",
            &feedback_path,
            &[
                ("Authorization", bearer.as_str()),
                ("Origin", origin.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "verdict=false_positive&comment=by+token&analyst=mallory",
        )
        .await;
    assert_eq!(by_script.status, 303, "{}", by_script.body);
    let analysts = world
        .query(
            "SELECT analyst FROM feedback WHERE comment = 'by token'",
            &[],
        )
        .await;
    assert_eq!(analysts.len(), 1);
    assert_eq!(analysts[0].get::<_, String>(0), "soar-e2e");

    let metrics = dashboard.http_get("/metrics").await.1;
    assert!(metrics.contains(
        "nadir_dashboard_requests_total{route=\"/runs/{run}/anomalies\",status=\"200\"}"
    ));
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .ok();
}
