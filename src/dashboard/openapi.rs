//! The OpenAPI 3.1 document of `courier serve`'s JSON API, served at `/openapi.json`. Assembled
//! by hand from the API's wire types; a test reads the API's router and fails when a route it
//! serves is missing here.

use serde_json::{json, Value};

use crate::message::TemplateType;
use crate::store::Status;

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})
}

/// The document.
pub fn document() -> Value {
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let types: Vec<&str> = TemplateType::ALL.iter().map(|t| t.as_str()).collect();
    let unauthorized = error_response("Missing or invalid bearer token");
    // Only when `jsonnet_courier.serve.rate_limit` is set.
    let limited = json!({"description": "The token's rate limit is exceeded; retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "courier serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accepts identity-server courier messages, stores them before acknowledging, and delivers them over the configured HTTP channels with persisted retries. Errors are JSON: {\"error\": {\"code\", \"status\", \"reason\"}}."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/messages": {
                "post": {
                    "summary": "Accept one message or an array of them",
                    "parameters": [{"name": "channel", "in": "query", "required": false, "schema": {"type": "string"},
                        "description": "The channel for messages that name none"}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Message"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/Message"}, "minItems": 1}
                    ]}}}},
                    "responses": {
                        "202": ok_json("Stored; `id` is present for a single message", json!({"type": "object",
                            "properties": {"id": {"type": "string"}, "ids": {"type": "array", "items": {"type": "string"}}},
                            "required": ["ids"]})),
                        "400": error_response("Malformed or invalid messages; nothing stored"),
                        "401": unauthorized,
                        "408": error_response("The body did not arrive within body_read_timeout; nothing stored"),
                        "409": error_response("A message id already exists"),
                        "413": error_response("The body is too large"),
                        "429": limited,
                        "503": error_response("The store is unavailable; nothing stored")
                    }
                },
                "get": {
                    "summary": "List messages, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": statuses}},
                        {"name": "recipient", "in": "query", "schema": {"type": "string"}},
                        {"name": "page_token", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}
                    ],
                    "responses": {
                        "200": ok_json("A page", json!({"type": "object", "properties": {
                            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/StoredMessage"}},
                            "next_page_token": {"type": ["string", "null"]}}, "required": ["messages", "next_page_token"]})),
                        "400": error_response("A bad query parameter"),
                        "401": unauthorized,
                        "429": limited
                    }
                }
            },
            "/messages/{id}": {
                "get": {
                    "summary": "One message with its attempts",
                    "parameters": [id_param()],
                    "responses": {
                        "200": ok_json("The message", json!({"$ref": "#/components/schemas/StoredMessage"})),
                        "401": unauthorized,
                        "404": error_response("No such message"),
                        "429": limited
                    }
                }
            },
            "/messages/{id}/retry": {
                "post": {
                    "summary": "Queue an abandoned or cancelled message again, due now",
                    "parameters": [id_param()],
                    "responses": {
                        "200": ok_json("Queued", json!({"type": "object", "properties": {"id": {"type": "string"}, "status": {"const": "queued"}}})),
                        "401": unauthorized,
                        "404": error_response("No such message"),
                        "409": error_response("The message is not abandoned or cancelled"),
                        "429": limited
                    }
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (OpenMetrics text)",
                    "responses": {
                        "200": {"description": "Metrics", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}},
                        "401": unauthorized,
                        "429": limited
                    }
                }
            },
            "/health/alive": {
                "get": {
                    "summary": "Liveness (no token needed)", "security": [],
                    "responses": {"200": ok_json("Alive", json!({"$ref": "#/components/schemas/Health"}))}
                }
            },
            "/health/ready": {
                "get": {
                    "summary": "Readiness: the store answers and the worker runs (no token needed)", "security": [],
                    "responses": {
                        "200": ok_json("Ready", json!({"$ref": "#/components/schemas/Health"})),
                        "503": ok_json("Not ready", json!({"$ref": "#/components/schemas/Health"}))
                    }
                }
            },
            "/ui/playground/render": {
                "post": {
                    "summary": "Render a template against a sample or pasted message (the dashboard's playground; nothing is sent)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PlaygroundRequest"}}}},
                    "responses": {
                        "200": ok_json("The payload (`ok: true`) or the error with its line and column", json!({"type": "object"})),
                        "400": error_response("Malformed request"),
                        "401": unauthorized
                    }
                }
            },
            "/ui/playground/check": {
                "post": {
                    "summary": "Render a template against every sample type (the table `courier check` prints)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PlaygroundRequest"}}}},
                    "responses": {
                        "200": ok_json("One row per sample", json!({"type": "object"})),
                        "400": error_response("Malformed request"),
                        "401": unauthorized
                    }
                }
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "One of jsonnet_courier.serve.tokens; not needed when none are configured (loopback only)"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "status", "reason"],
                    "properties": {"code": {"type": "integer"}, "status": {"type": "string"}, "reason": {"type": "string"}}}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["ok", "unavailable"]}, "reason": {"type": "string"}}},
                "Message": {"type": "object", "required": ["recipient", "template_type"],
                    "description": "A courier message; keys are accepted in snake_case or PascalCase (Recipient, TemplateType, ...)",
                    "properties": {
                        "id": {"type": "string"},
                        "recipient": {"type": "string", "minLength": 1},
                        "template_type": {"type": "string", "enum": types},
                        "template_data": {"type": "object", "additionalProperties": true},
                        "subject": {"type": "string"},
                        "body": {"type": "string"},
                        "html_body": {"type": "string"},
                        "message_type": {"type": "string", "enum": ["email", "sms"], "default": "email"},
                        "channel": {"type": "string"},
                        "request_headers": {"type": "object", "additionalProperties": true}
                    }},
                "Attempt": {"type": "object", "required": ["number", "started_at", "latency_ms", "class"], "properties": {
                    "number": {"type": "integer", "minimum": 1},
                    "started_at": {"type": "string", "format": "date-time"},
                    "latency_ms": {"type": "number"},
                    "render_ms": {"type": "number"},
                    "class": {"type": "string", "enum": ["delivered", "retryable", "permanent", "cancelled"]},
                    "status": {"type": "integer"},
                    "error_kind": {"type": "string", "enum": ["connect", "timeout", "transport", "status", "redirect", "render", "cancelled", "encode", "channel"]},
                    "error": {"type": "string"},
                    "response_body": {"type": "string"},
                    "retry_after_s": {"type": "number"}
                }},
                "StoredMessage": {"type": "object",
                    "required": ["id", "status", "send_count", "message", "attempts", "created_at", "updated_at", "next_attempt_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": statuses},
                        "send_count": {"type": "integer"},
                        "message": {"$ref": "#/components/schemas/Message"},
                        "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "next_attempt_at": {"type": "string", "format": "date-time"}
                    }},
                "PlaygroundRequest": {"type": "object", "required": ["template"], "properties": {
                    "kind": {"type": "string", "enum": ["jsonnet"], "default": "jsonnet"},
                    "template": {"type": "string"},
                    "template_type": {"type": "string", "enum": types},
                    "message_type": {"type": "string", "enum": ["email", "sms"]},
                    "style": {"type": "string", "enum": ["pascal", "snake"]},
                    "message": {"type": "string", "description": "A message as JSON; replaces the sample"}
                }}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{AttemptClass, ErrorKind};

    /// Every `(&Method::X, ["a", var, ...])` arm of the API's router, as (method, OpenAPI path).
    fn api_routes() -> Vec<(String, String)> {
        let source = include_str!("../service/api/mod.rs");
        let mut routes = Vec::new();
        for part in source.split("(&Method::").skip(1) {
            let Some((method, rest)) = part.split_once(", [") else {
                continue;
            };
            let Some((segments, _)) = rest.split_once(']') else {
                continue;
            };
            let path: Vec<String> = segments
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(
                    |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(literal) => literal.to_owned(),
                        None => format!("{{{s}}}"),
                    },
                )
                .collect();
            routes.push((method.to_lowercase(), format!("/{}", path.join("/"))));
        }
        routes
    }

    #[test]
    fn every_api_route_is_documented() {
        let routes = api_routes();
        // The scan must see the router, or the test would pass vacuously.
        for expected in [
            ("post", "/messages"),
            ("get", "/messages/{id}"),
            ("get", "/health/alive"),
        ] {
            assert!(
                routes
                    .iter()
                    .any(|(m, p)| (m.as_str(), p.as_str()) == expected),
                "the router scan missed {expected:?}: {routes:?}"
            );
        }
        let doc = document();
        for (method, path) in &routes {
            assert!(
                doc["paths"][path][method].is_object(),
                "{} {path} is served by the API but missing from /openapi.json",
                method.to_uppercase()
            );
        }
    }

    #[test]
    fn enums_match_the_wire_types() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let classes: Vec<Value> = [
            AttemptClass::Delivered,
            AttemptClass::Retryable,
            AttemptClass::Permanent,
            AttemptClass::Cancelled,
        ]
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
        assert_eq!(
            schemas["Attempt"]["properties"]["class"]["enum"],
            json!(classes)
        );
        for kind in schemas["Attempt"]["properties"]["error_kind"]["enum"]
            .as_array()
            .unwrap()
        {
            serde_json::from_value::<ErrorKind>(kind.clone()).unwrap();
        }
        for field in schemas["StoredMessage"]["required"].as_array().unwrap() {
            assert!(schemas["StoredMessage"]["properties"][field.as_str().unwrap()].is_object());
        }
        // A real stored message has exactly the documented top-level keys.
        let stored = crate::store::StoredMessage {
            id: "x".into(),
            status: Status::Queued,
            send_count: 0,
            message: crate::message::samples::message(
                TemplateType::Stub,
                crate::message::MessageType::Email,
            )
            .unwrap(),
            attempts: Vec::new(),
            created_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
            next_attempt_at: std::time::SystemTime::UNIX_EPOCH,
        };
        let v = serde_json::to_value(&stored).unwrap();
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        let mut documented: Vec<&String> = schemas["StoredMessage"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        documented.sort();
        assert_eq!(keys, documented);
    }
}
