//! `ras serve` as a process: SIGTERM stops it gracefully (queued requests
//! get 503, the running one finishes, the process exits 0).

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ras::pipeline::DEMO_MODEL;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_running_job_and_refuses_the_queued_ones() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ras"))
        .args([
            "serve",
            "--port",
            "0",
            "--shutdown-timeout",
            "60",
            "--model",
            DEMO_MODEL,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Forward the log lines (draining the pipe so the server never blocks on it).
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("the server starts");
        log.push(line.clone());
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.trim().to_owned();
        }
    };
    let txt2img = format!("http://{addr}/sdapi/v1/txt2img");
    let client = reqwest::Client::new();
    let running = tokio::spawn({
        let (client, target) = (client.clone(), txt2img.clone());
        let body = json!({"prompt": "a red circle", "steps": 24, "width": 256, "height": 256, "seed": 3});
        async move { client.post(target).json(&body).send().await }
    });
    let progress = format!("http://{addr}/sdapi/v1/progress?skip_current_image=true");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p: serde_json::Value = client.get(&progress).send().await.unwrap().json().await.unwrap();
        if p["state"]["sampling_step"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued = tokio::spawn({
        let (client, target) = (client.clone(), txt2img.clone());
        let body = json!({"prompt": "a blue square", "steps": 24, "width": 256, "height": 256});
        async move { client.post(target).json(&body).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let queued = queued.await.unwrap().unwrap();
    assert_eq!(queued.status(), 503, "the queued request is refused");
    let body: serde_json::Value = queued.json().await.unwrap();
    assert_eq!(body["error"], "ShuttingDown");
    let running = running.await.unwrap().unwrap();
    assert_eq!(running.status(), 200, "the running job finishes");
    let body: serde_json::Value = running.json().await.unwrap();
    assert_eq!(body["images"].as_array().unwrap().len(), 1);

    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    log.extend(lines.try_iter());
    assert!(exit.success(), "exit {exit}; log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("shutting down")),
        "{}",
        log.join("\n")
    );
    assert!(
        client.get(&progress).send().await.is_err(),
        "nothing listens any more"
    );
}
