//! The queue and the workers: batching, many clients, progress, interrupt,
//! disconnects, a full queue.

use std::time::{Duration, Instant};

use ras::serve::{Handle, ServeConfig};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::client::{config, decode_png, get, info, post, post_url, shared, url};

/// A request that keeps a worker busy for a while (interrupted or
/// abandoned by the tests that send it).
fn long_job(prompt: &str) -> Value {
    json!({"prompt": prompt, "steps": 150, "width": 256, "height": 256, "seed": 1})
}

/// Sends a txt2img request in the background; the raw response, for
/// tests that look at it after other calls.
fn spawn_txt2img(server: &Handle, body: Value) -> JoinHandle<reqwest::Result<reqwest::Response>> {
    let target = url(server, "/sdapi/v1/txt2img");
    tokio::spawn(async move { reqwest::Client::new().post(target).json(&body).send().await })
}

/// Waits until the server reports a running job with at least one step done.
async fn wait_running(server: &Handle) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = get(server, "/sdapi/v1/progress").await.json;
        if p["state"]["sampling_step"].as_u64().unwrap_or(0) > 0 {
            return p;
        }
        assert!(Instant::now() < deadline, "no job started: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_idle(server: &Handle) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(server, "/sdapi/v1/progress").await.json["state"]["sampling_steps"] != 0 {
        assert!(Instant::now() < deadline, "the job did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests that wait together run as one batch, and each image is what
/// it would be alone.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_requests_run_as_one_batch_with_their_own_prompts_and_seeds() {
    let server = Handle::spawn(ServeConfig {
        max_batch: 4,
        ..config()
    })
    .unwrap();
    let ask = |prompt: &str, seed: u64| json!({"prompt": prompt, "steps": 5, "width": 128, "height": 128, "seed": seed, "cfg_scale": 6.0});
    let cases = [
        ("a red circle", 11),
        ("a yellow cross", 12),
        ("two green triangles", 13),
        ("a white star", 14),
    ];
    // Occupy the worker so the four queue up behind it.
    let blocker = spawn_txt2img(
        &server,
        json!({"prompt": "blocker", "steps": 12, "width": 256, "height": 256, "seed": 0}),
    );
    wait_running(&server).await;
    let target = url(&server, "/sdapi/v1/txt2img");
    let batched = futures_join(cases.iter().map(|(p, s)| post_url(target.clone(), ask(p, *s)))).await;
    assert!(blocker.await.unwrap().unwrap().status().is_success());
    for (answer, (prompt, seed)) in batched.iter().zip(cases) {
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(info(answer)["batch_images"], 4, "the four ran together");
        let alone = post(&server, "/sdapi/v1/txt2img", &ask(prompt, seed)).await;
        assert_eq!(info(&alone)["batch_images"], 1);
        assert_eq!(
            decode_png(&answer.json["images"][0]).rgb,
            decode_png(&alone.json["images"][0]).rgb,
            "'{prompt}' batched differs from alone"
        );
    }
    let metrics = get(&server, "/metrics").await.json;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("ras_images_generated_total 9"), "{text}");
    assert!(text.contains("ras_batch_images_count 6"), "{text}");
    assert!(text.contains("ras_tokens_skipped_total"), "{text}");
    assert!(
        text.contains("ras_http_requests_total{route=\"/sdapi/v1/txt2img\",status=\"200\"} 9"),
        "{text}"
    );
    assert!(
        text.contains("ras_step_duration_seconds_count{kind=\"ras\"}"),
        "{text}"
    );
    assert!(
        text.contains("ras_gpu_memory_bytes{worker=\"0\",adapter="),
        "{text}"
    );
}

/// Polls all futures together (the tests' own `join_all`).
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_concurrent_clients_are_all_served() {
    let answers = futures_join((0..8).map(|i| {
        let body =
            json!({"prompt": format!("a red circle {i}"), "steps": 3, "width": 64, "height": 64, "seed": i});
        post_url(url(shared(), "/sdapi/v1/txt2img"), body)
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.json["images"].as_array().unwrap().len(), 1);
    }
}

/// Progress with a preview while a job runs; interrupt stops it; a client
/// that goes away stops its job too.
#[tokio::test(flavor = "multi_thread")]
async fn progress_interrupt_and_disconnect() {
    let server = Handle::spawn(config()).unwrap();
    let job = spawn_txt2img(&server, long_job("a red circle"));
    let first = wait_running(&server).await;
    assert_eq!(first["state"]["sampling_steps"], 150);
    assert!(first["progress"].as_f64().unwrap() > 0.0);
    // The preview is made after the step following the first poll.
    let deadline = Instant::now() + Duration::from_secs(60);
    let preview = loop {
        let p = get(&server, "/sdapi/v1/progress").await.json;
        if !p["current_image"].is_null() {
            break p;
        }
        assert!(Instant::now() < deadline, "no preview: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(preview["eta_relative"].as_f64().unwrap() > 0.0);
    let png = decode_png(&preview["current_image"]);
    assert_eq!((png.width, png.height), (32, 32), "a latent-resolution preview");

    let stopped = post(&server, "/sdapi/v1/interrupt", &json!({})).await;
    assert_eq!(stopped.status, 200);
    let answer = crate::client::answer(job.await.unwrap().unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(info(&answer)["interrupted"], true);
    assert_eq!(answer.json["images"], json!([]));
    wait_idle(&server).await;

    // A client that gives up: its job stops within a step or so.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let gone = client
        .post(url(&server, "/sdapi/v1/txt2img"))
        .json(&long_job("a blue square"))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    let t = Instant::now();
    wait_idle(&server).await;
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the abandoned job kept running"
    );
    let metrics = get(&server, "/metrics").await.json;
    assert!(
        metrics.as_str().unwrap().contains("status=\"499\"} 1"),
        "{metrics}"
    );
    // And the server still serves.
    let ok = post(
        &server,
        "/sdapi/v1/txt2img",
        &json!({"prompt": "a red circle", "steps": 2, "width": 64, "height": 64}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_with_retry_after() {
    let server = Handle::spawn(ServeConfig {
        max_queue: 1,
        ..config()
    })
    .unwrap();
    let running = spawn_txt2img(&server, long_job("first"));
    wait_running(&server).await;
    let queued = spawn_txt2img(&server, long_job("second"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&server, "/metrics")
        .await
        .json
        .as_str()
        .unwrap()
        .contains("ras_queue_depth 1")
    {
        assert!(Instant::now() < deadline, "the second request never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let full = post(&server, "/sdapi/v1/txt2img", &long_job("third")).await;
    assert_eq!(full.status, 503, "{}", full.json);
    assert_eq!(full.json["error"], "QueueFull");
    let retry: u64 = full.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let openai = post(&server, "/v1/images/generations", &json!({"prompt": "fourth"})).await;
    assert_eq!(openai.status, 503);
    assert_eq!(openai.json["error"]["code"], "QueueFull");
    post(&server, "/sdapi/v1/interrupt", &json!({})).await;
    assert!(running.await.unwrap().unwrap().status().is_success());
    wait_running(&server).await;
    post(&server, "/sdapi/v1/interrupt", &json!({})).await;
    assert!(queued.await.unwrap().unwrap().status().is_success());
}

/// Several models in one server, picked per request; Lumina batches only
/// requests with one prompt (its text rows are as long as the prompt).
#[tokio::test(flavor = "multi_thread")]
async fn a_lumina_model_beside_the_demo_batches_by_prompt() {
    let lumina = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lumina_pipeline/model"
    );
    let mut cfg = config();
    cfg.models.push(lumina.to_owned());
    let server = Handle::spawn(cfg).unwrap();
    let models = get(&server, "/sdapi/v1/sd-models").await.json;
    let names: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ras-demo", "model"]);
    assert_eq!(models[1]["family"], "Lumina-Next");
    let ask = |prompt: &str, seed: u64| json!({"prompt": prompt, "steps": 4, "seed": seed, "override_settings": {"sd_model_checkpoint": "model"}});
    let blocker = spawn_txt2img(&server, json!({"prompt": "blocker", "steps": 12, "seed": 0}));
    wait_running(&server).await;
    let target = url(&server, "/sdapi/v1/txt2img");
    let cases = [("a red circle", 1), ("a red circle", 2), ("a blue square", 3)];
    let answers = futures_join(cases.iter().map(|(p, s)| post_url(target.clone(), ask(p, *s)))).await;
    assert!(blocker.await.unwrap().unwrap().status().is_success());
    for (answer, want_batch) in answers.iter().zip([2, 2, 1]) {
        assert_eq!(answer.status, 200, "{}", answer.json);
        let info = info(answer);
        assert_eq!(info["sd_model_name"], "model");
        assert_eq!(info["batch_images"], want_batch, "{info}");
        let png = decode_png(&answer.json["images"][0]);
        assert_eq!((png.width, png.height), (128, 128), "Lumina's native size");
    }
    // A1111 clients switch the default model through the options.
    let set = post(
        &server,
        "/sdapi/v1/options",
        &json!({"sd_model_checkpoint": "model"}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.json);
    assert_eq!(
        get(&server, "/sdapi/v1/options").await.json["sd_model_checkpoint"],
        "model"
    );
    let unknown = post(
        &server,
        "/sdapi/v1/options",
        &json!({"sd_model_checkpoint": "sd_xl_base_1.0"}),
    )
    .await;
    assert_eq!(
        (unknown.status.as_u16(), &unknown.json["field"]),
        (422, &json!("sd_model_checkpoint"))
    );
    let alone = post(
        &server,
        "/sdapi/v1/txt2img",
        &json!({"prompt": "a red circle", "steps": 4, "seed": 2}),
    )
    .await;
    assert_eq!(info(&alone)["sd_model_name"], "model");
    assert_eq!(
        decode_png(&alone.json["images"][0]).rgb,
        decode_png(&answers[1].json["images"][0]).rgb
    );
}
