//! What a server on a network must refuse: bad input (each a JSON 4xx
//! naming the field, after which it keeps serving), oversized bodies,
//! missing keys, and binding beyond loopback without one.

use std::net::{IpAddr, Ipv4Addr};

use ras::serve::{Handle, Limits, ServeConfig, Server};
use serde_json::{json, Value};

use crate::client::{config, get, post, post_raw, shared, url};

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_a_4xx_naming_the_field_and_the_server_keeps_serving() {
    let server = shared();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"prompt": "x", "steps": "many"}), 422, "steps"),
        (json!({"prompt": "x", "steps": -3}), 422, "steps"),
        (json!({"prompt": "x", "steps": 0}), 422, "steps"),
        (json!({"prompt": "x", "steps": 100000}), 422, "steps"),
        (json!({"prompt": "x", "width": 100}), 422, "width"),
        (json!({"prompt": "x", "height": 1_000_000}), 422, "height"),
        (json!({"prompt": "x", "cfg_scale": -1}), 422, "cfg_scale"),
        (json!({"prompt": "x", "batch_size": 0}), 422, "batch_size"),
        (
            json!({"prompt": "x", "batch_size": 8, "n_iter": 8}),
            422,
            "batch_size",
        ),
        (json!({"prompt": "x", "seed": -7}), 422, "seed"),
        (json!({"prompt": 5}), 422, "prompt"),
        (
            json!({"prompt": "x", "override_settings": {"sd_model_checkpoint": "/etc/passwd"}}),
            422,
            "override_settings.sd_model_checkpoint",
        ),
        (
            json!({"prompt": "x", "ras_sample_ratio": 2.0}),
            422,
            "ras_sample_ratio",
        ),
        (
            json!({"prompt": "x", "ras_high_ratio": -1.0}),
            422,
            "ras_high_ratio",
        ),
        (json!({"prompt": "x", "ras_metric": "max"}), 422, "ras_metric"),
        (
            json!({"prompt": "x", "steps": 10, "ras_error_reset_steps": [4, 10]}),
            422,
            "ras_error_reset_steps",
        ),
        (
            json!({"prompt": "x", "ras_scheduler_start_step": 0}),
            422,
            "ras_scheduler_start_step",
        ),
        (
            json!({"prompt": "x", "ras_precision": "f8"}),
            422,
            "ras_precision",
        ),
    ];
    for (body, status, field) in cases {
        let a = post(server, "/sdapi/v1/txt2img", &body).await;
        assert_eq!(a.status.as_u16(), status, "{body} → {}", a.json);
        assert_eq!(a.json["field"], field, "{body} → {}", a.json);
        assert!(
            a.json["detail"].as_str().unwrap().starts_with(field),
            "{}",
            a.json
        );
    }
    for raw in [
        &b"{\"prompt\": \"x\","[..],
        b"not json",
        b"",
        b"[1, 2]",
        b"{} trailing",
    ] {
        let a = post_raw(server, "/sdapi/v1/txt2img", raw.to_vec()).await;
        assert!(
            a.status == 400 || a.status == 422,
            "{:?} → {} {}",
            String::from_utf8_lossy(raw),
            a.status,
            a.json
        );
        assert!(a.json["detail"].is_string(), "{}", a.json);
    }
    let huge = json!({"prompt": "x".repeat(Limits::default().max_body_bytes + 1)});
    let a = post(server, "/sdapi/v1/txt2img", &huge).await;
    assert_eq!(a.status, 413, "{}", a.json);
    assert_eq!(a.json["error"], "PayloadTooLarge");
    let ok = post(
        server,
        "/sdapi/v1/txt2img",
        &json!({"prompt": "a red circle", "steps": 2, "width": 64, "height": 64}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_request_limits_are_configurable() {
    let server = Handle::spawn(ServeConfig {
        limits: Limits {
            max_pixels: 64 * 64,
            max_steps: 3,
            max_images: 2,
            max_body_bytes: 200,
        },
        warmup: false,
        ..config()
    })
    .unwrap();
    for (body, field) in [
        (json!({"prompt": "x", "width": 128, "height": 64}), "width"),
        (
            json!({"prompt": "x", "width": 64, "height": 64, "steps": 4}),
            "steps",
        ),
        (
            json!({"prompt": "x", "width": 64, "height": 64, "steps": 2, "n_iter": 3}),
            "batch_size",
        ),
    ] {
        let a = post(&server, "/sdapi/v1/txt2img", &body).await;
        assert_eq!(
            (a.status.as_u16(), &a.json["field"]),
            (422, &json!(field)),
            "{}",
            a.json
        );
    }
    let long = json!({"prompt": "x".repeat(300)});
    assert_eq!(post(&server, "/sdapi/v1/txt2img", &long).await.status, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_is_required_when_set() {
    let key = "s3cret-key-for-tests";
    let server = Handle::spawn(ServeConfig {
        api_key: Some(key.into()),
        warmup: false,
        ..config()
    })
    .unwrap();
    let models = url(&server, "/sdapi/v1/sd-models");
    let client = reqwest::Client::new();
    let none = client.get(&models).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = client
        .get(&models)
        .bearer_auth("s3cret-key-for-test")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let openai = client
        .post(url(&server, "/v1/images/generations"))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 401);
    let body: Value = openai.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let right = client.get(&models).bearer_auth(key).send().await.unwrap();
    assert_eq!(right.status(), 200);
    // Load balancers probe without the key.
    assert_eq!(get(&server, "/healthz").await.status, 200);
}

#[test]
fn binding_beyond_loopback_needs_a_key_or_insecure() {
    let open = ServeConfig {
        host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ..config()
    };
    let err = Server::start(open.clone()).err().expect("refused").to_string();
    assert!(err.contains("--api-key"), "{err}");
    let short = ServeConfig {
        api_key: Some("short".into()),
        ..open.clone()
    };
    assert!(Server::start(short)
        .err()
        .unwrap()
        .to_string()
        .contains("at least 8"));
    for allowed in [
        ServeConfig {
            api_key: Some("long-enough-key".into()),
            warmup: false,
            ..open.clone()
        },
        ServeConfig {
            insecure: true,
            warmup: false,
            ..open
        },
    ] {
        let server = Handle::spawn(allowed).expect("allowed");
        server.shutdown().unwrap();
    }
}

/// The command line refuses an open address without a key before it
/// touches a GPU, with a message saying what to do.
#[test]
fn the_command_line_refuses_an_open_address_without_a_key() {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .env_remove("RAS_API_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to serve on 0.0.0.0 without --api-key"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");
}

/// A worker whose adapter cannot be opened fails the start, naming it.
#[test]
fn an_adapter_that_does_not_exist_fails_the_start() {
    let config = ServeConfig {
        adapters: ras::serve::Adapters::Named(vec!["no-such-gpu-xyz".into()]),
        ..config()
    };
    let err = Server::start(config).err().expect("refused").to_string();
    assert!(
        err.contains("no usable GPU adapter found matching 'no-such-gpu-xyz'"),
        "{err}"
    );
}
