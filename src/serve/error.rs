//! Errors as each API's clients expect them: AUTOMATIC1111's
//! `{"error", "detail"}` (plus the offending `field`), OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which API's error layout a response uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    A1111,
    OpenAi,
}

impl Api {
    /// The API a path belongs to, for responses made before a handler runs.
    pub fn of_path(path: &str) -> Api {
        if path.starts_with("/v1/") {
            Api::OpenAi
        } else {
            Api::A1111
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The body is not JSON.
    Malformed,
    /// A field has the wrong type or an out-of-range value.
    Invalid,
    /// A valid request this server does not do (e.g. `response_format: url`).
    Unsupported,
    TooLarge,
    Unauthorized,
    NotFound,
    /// The queue is full.
    Busy,
    ShuttingDown,
    /// Valid, but refused by the engine before any work (memory budget).
    Refused,
    Internal,
}

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub api: Api,
    pub kind: Kind,
    /// The request field at fault (a JSON path such as `override_settings.sd_model_checkpoint`).
    pub field: Option<String>,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(api: Api, kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError {
            api,
            kind,
            field: None,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// `field` is wrong; the message is prefixed with its name.
    pub fn field(api: Api, field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(api, Kind::Invalid, format!("{field}: {message}"))
        }
    }

    pub fn status(&self) -> StatusCode {
        match (self.kind, self.api) {
            (Kind::Malformed | Kind::Unsupported | Kind::Refused, _) => StatusCode::BAD_REQUEST,
            // FastAPI, which A1111 runs on, answers validation errors with 422.
            (Kind::Invalid, Api::A1111) => StatusCode::UNPROCESSABLE_ENTITY,
            (Kind::Invalid, Api::OpenAi) => StatusCode::BAD_REQUEST,
            (Kind::TooLarge, _) => StatusCode::PAYLOAD_TOO_LARGE,
            (Kind::Unauthorized, _) => StatusCode::UNAUTHORIZED,
            (Kind::NotFound, _) => StatusCode::NOT_FOUND,
            (Kind::Busy | Kind::ShuttingDown, _) => StatusCode::SERVICE_UNAVAILABLE,
            (Kind::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Malformed => "MalformedJson",
            Kind::Invalid => "ValidationError",
            Kind::Unsupported => "Unsupported",
            Kind::TooLarge => "PayloadTooLarge",
            Kind::Unauthorized => "Unauthorized",
            Kind::NotFound => "NotFound",
            Kind::Busy => "QueueFull",
            Kind::ShuttingDown => "ShuttingDown",
            Kind::Refused => "Refused",
            Kind::Internal => "InternalError",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.api {
            Api::A1111 => json!({
                "error": self.kind_name(),
                "detail": self.message,
                "field": self.field,
            }),
            Api::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": match self.kind {
                        Kind::Internal => "server_error",
                        Kind::Unauthorized => "authentication_error",
                        Kind::Busy | Kind::ShuttingDown => "server_overloaded",
                        _ => "invalid_request_error",
                    },
                    "param": self.field,
                    "code": self.kind_name(),
                }
            }),
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.kind == Kind::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Parses a JSON body into `T`, naming the field at fault: malformed JSON
/// is `Malformed`, a wrong type or a missing required field is `Invalid`
/// with the field's path.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(api: Api, body: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: serde_json::Error| {
        ApiError::new(api, Kind::Malformed, format!("the body is not valid JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => ApiError::field(api, &path, inner),
            serde_json::error::Category::Data => ApiError::new(api, Kind::Invalid, inner.to_string()),
            _ => malformed(inner),
        }
    })?;
    de.end().map_err(malformed)?;
    Ok(value)
}
