//! Check real responses against the OpenAPI document the service serves:
//! the status is documented for the operation, the content type is the
//! documented one, and a JSON body validates against the documented schema
//! (JSON Schema 2020-12, which OpenAPI 3.1 schemas are).
//!
//! ```ignore
//! let doc = OpenApiDoc::load().await;
//! doc.check(&Method::GET, "/api/v1/jobs/{id}", &response);
//! ```

use axum::http::{header, Method};
use serde_json::{json, Value};

use super::TestResponse;

/// The service's OpenAPI document.
pub struct OpenApiDoc {
    pub doc: Value,
}

impl OpenApiDoc {
    /// The document as `/openapi.json` serves it (read through the router,
    /// so it is the served bytes, not a second rendering).
    pub async fn load() -> Self {
        let mut config =
            lifecycled::Config::with_database_url("postgres://nobody@127.0.0.1:1/none");
        config.db.db_timeout_secs = 1;
        let router = lifecycled::build_router(lifecycled::AppState::new(config).expect("state"));
        let response = super::get(router, "/openapi.json").await;
        assert_eq!(response.status, 200, "{}", response.text());
        Self { doc: response.body }
    }

    /// The operation object of `method` `template`.
    pub fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.as_str().to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI document"
        );
        op
    }

    /// Panics unless `response` is what the document says `method`
    /// `template` answers.
    pub fn check(&self, method: &Method, template: &str, response: &TestResponse) {
        let op = self.operation(method, template);
        let status = response.status.as_str();
        let documented = op["responses"]
            .get(status)
            .or_else(|| op["responses"].get("default"))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {template} answered {status}, which the document does not list: {}",
                    response.text()
                )
            });
        let Some(content) = documented.get("content").and_then(Value::as_object) else {
            return;
        };
        let content_type = response
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (media, spec) = content
            .iter()
            .find(|(media, _)| content_type.starts_with(media.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {template} {status}: content type {content_type:?} is not one of {:?}",
                    content.keys().collect::<Vec<_>>()
                )
            });
        if media != "application/json" {
            return;
        }
        let Some(schema) = spec.get("schema") else {
            return;
        };
        self.validate(schema, &response.body)
            .unwrap_or_else(|errors| {
                panic!(
                    "{method} {template} {status}: the body breaks the document's schema: {errors}\nbody: {}",
                    response.body
                )
            });
    }

    /// Validate `instance` against a schema of the document (its `$ref`s
    /// resolve against the document's components).
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root = match schema {
            Value::Object(map) => Value::Object(map.clone()),
            other => json!({"allOf": [other]}),
        };
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|err| panic!("the document's schema does not compile: {err}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
