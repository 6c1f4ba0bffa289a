//! The A1111 and OpenAI endpoints as their clients call them.

use serde_json::json;

use crate::client::{decode_png, get, info, post, shared};

#[tokio::test(flavor = "multi_thread")]
async fn txt2img_returns_pngs_with_settings_and_repeats_exactly() {
    let server = shared();
    let body = json!({
        "prompt": "a small red circle on a blue background",
        "negative_prompt": "blurry",
        "steps": 6, "cfg_scale": 5.0, "width": 128, "height": 96,
        "seed": 1234, "batch_size": 2, "n_iter": 1,
        "sampler_name": "DPM++ 2M Karras", "scheduler": "Karras",
        "restore_faces": false, "override_settings": {},
        "ras_sample_ratio": 0.25,
    });
    let first = post(server, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(first.status, 200, "{}", first.json);
    let images = first.json["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (i, image) in images.iter().enumerate() {
        let png = decode_png(image);
        assert_eq!((png.width, png.height), (128, 96));
        assert_eq!(png.rgb.len(), 128 * 96 * 3);
        assert!(png
            .parameters
            .starts_with("a small red circle on a blue background\nNegative prompt: blurry\n"));
        assert!(
            png.parameters.contains(&format!("Seed: {}", 1234 + i)),
            "{}",
            png.parameters
        );
        assert!(png.parameters.contains("Steps: 6,"));
        assert!(png.parameters.contains("RAS: sample ratio 0.25"));
    }
    let info = info(&first);
    assert_eq!(info["all_seeds"], json!([1234, 1235]));
    assert_eq!(info["seed"], 1234);
    assert_eq!(info["sampler_name"], "Euler");
    assert_eq!(info["sd_model_name"], "ras-demo");
    assert_eq!(info["ras_sample_ratio"], 0.25);
    assert_eq!(info["ras_dense"], false);
    assert_eq!(info["interrupted"], false);
    assert_eq!(info["infotexts"].as_array().unwrap().len(), 2);
    assert!(info["timings"]["total_s"].as_f64().unwrap() > 0.0);
    assert_eq!(first.json["parameters"]["seed"], 1234);
    let resets = ras::ras::RasConfig::sd3_example(6).error_reset_steps;
    assert_eq!(first.json["parameters"]["ras_error_reset_steps"], json!(resets));

    let again = post(server, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(
        again.json["images"], first.json["images"],
        "same request, same bytes"
    );

    // Each image depends on its own seed only: the second image alone.
    let mut single = body.clone();
    single["seed"] = json!(1235);
    single["batch_size"] = json!(1);
    let alone = post(server, "/sdapi/v1/txt2img", &single).await;
    assert_eq!(
        decode_png(&alone.json["images"][0]).rgb,
        decode_png(&images[1]).rgb
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn random_seeds_are_reported_and_repeatable() {
    let server = shared();
    let body =
        json!({"prompt": "a green star", "steps": 3, "width": 64, "height": 64, "seed": -1, "n_iter": 2});
    let a = post(server, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let seeds = info(&a)["all_seeds"].clone();
    let seed = seeds[0].as_u64().unwrap();
    assert!(seed <= u32::MAX as u64);
    assert_eq!(seeds, json!([seed, seed + 1]));
    let mut fixed = body.clone();
    fixed["seed"] = json!(seed);
    let b = post(server, "/sdapi/v1/txt2img", &fixed).await;
    assert_eq!(a.json["images"], b.json["images"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_generations_answer_as_the_client_library_expects() {
    let server = shared();
    let ok = post(
        server,
        "/v1/images/generations",
        &json!({"model": "ras-demo", "prompt": "a blue square", "n": 2, "size": "64x64",
                "response_format": "b64_json", "quality": "standard", "user": "test", "seed": 5, "steps": 4}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    assert!(ok.json["created"].as_u64().unwrap() > 1_700_000_000);
    let data = ok.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        assert_eq!(d["revised_prompt"], "a blue square");
        let png = decode_png(&d["b64_json"]);
        assert_eq!((png.width, png.height), (64, 64));
    }
    let url = post(
        server,
        "/v1/images/generations",
        &json!({"prompt": "x", "response_format": "url"}),
    )
    .await;
    assert_eq!(url.status, 400);
    assert_eq!(url.json["error"]["param"], "response_format");
    assert!(url.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("b64_json"));
    let model = post(
        server,
        "/v1/images/generations",
        &json!({"prompt": "x", "model": "dall-e-3"}),
    )
    .await;
    assert_eq!(model.status, 400);
    assert_eq!(model.json["error"]["param"], "model");
    assert_eq!(model.json["error"]["type"], "invalid_request_error");
    assert!(model.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ras-demo"));
    let size = post(
        server,
        "/v1/images/generations",
        &json!({"prompt": "x", "size": "big"}),
    )
    .await;
    assert_eq!(
        (size.status.as_u16(), &size.json["error"]["param"]),
        (400, &json!("size"))
    );
    let none = post(server, "/v1/images/generations", &json!({"n": 1})).await;
    assert_eq!(
        (none.status.as_u16(), &none.json["error"]["param"]),
        (400, &json!("prompt"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_endpoints() {
    let server = shared();
    let models = get(server, "/sdapi/v1/sd-models").await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json[0]["model_name"], "ras-demo");
    assert_eq!(models.json[0]["filename"], "ras-demo", "no path is revealed");
    let options = get(server, "/sdapi/v1/options").await;
    assert_eq!(options.json["sd_model_checkpoint"], "ras-demo");
    let samplers = get(server, "/sdapi/v1/samplers").await;
    assert_eq!(samplers.json[0]["name"], "Euler");
    assert_eq!(get(server, "/healthz").await.status, 200);
    let missing = get(server, "/sdapi/v1/nothing").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json["detail"]
        .as_str()
        .unwrap()
        .contains("/sdapi/v1/nothing"));
}
