//! Servers and an HTTP client for the tests: real sockets, the demo model.

use std::sync::OnceLock;

use base64::Engine;
use ras::pipeline::DEMO_MODEL;
use ras::serve::{Handle, ServeConfig};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// The demo model on the default adapter, any free port.
pub fn config() -> ServeConfig {
    ServeConfig {
        models: vec![DEMO_MODEL.to_owned()],
        port: 0,
        ..ServeConfig::default()
    }
}

/// One server shared by the tests that do not change its settings or
/// interrupt it. A missing adapter fails here, never skips.
pub fn shared() -> &'static Handle {
    static SERVER: OnceLock<Handle> = OnceLock::new();
    SERVER.get_or_init(|| Handle::spawn(config()).expect("starting the shared server"))
}

pub fn url(server: &Handle, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

pub async fn post(server: &Handle, path: &str, body: &Value) -> Answer {
    post_raw(server, path, serde_json::to_vec(body).unwrap()).await
}

/// `post` to a full URL, owning its arguments (for `tokio::spawn`).
pub async fn post_url(target: String, body: Value) -> Answer {
    post_raw_url(target, serde_json::to_vec(&body).unwrap()).await
}

pub async fn post_raw(server: &Handle, path: &str, body: Vec<u8>) -> Answer {
    post_raw_url(url(server, path), body).await
}

async fn post_raw_url(target: String, body: Vec<u8>) -> Answer {
    let response = reqwest::Client::new()
        .post(target)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    answer(response).await
}

pub async fn get(server: &Handle, path: &str) -> Answer {
    answer(reqwest::get(url(server, path)).await.expect("the server answers")).await
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        json,
    }
}

/// A decoded base64 PNG: width, height, RGB bytes and its `parameters` text.
pub struct Png {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub parameters: String,
}

pub fn decode_png(b64: &Value) -> Png {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().expect("a base64 string"))
        .expect("valid base64");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut rgb).expect("PNG pixels");
    rgb.truncate(frame.buffer_size());
    let parameters = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
        .map(|t| t.text.clone())
        .unwrap_or_default();
    Png {
        width: frame.width,
        height: frame.height,
        rgb,
        parameters,
    }
}

/// The `info` string of a txt2img answer, parsed.
pub fn info(answer: &Answer) -> Value {
    serde_json::from_str(answer.json["info"].as_str().expect("info is a JSON string")).unwrap()
}
