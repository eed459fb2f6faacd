//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the wire types' schemas, and the reference page rendered from it.
//!
//! Every `/v1` route is registered through `utoipa_axum::routes!`, which takes the path
//! and method from the handler's attribute: a route and its documentation are one
//! declaration, so they cannot drift apart (a test also checks the sources for a /v1
//! path registered with axum's plain `route`, which would bypass the document).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use protocol::{ErrorBody, ErrorCode, VoucherKind, VoucherState};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Couchpay",
        description = "Pay on a TV with a phone: orders, payments, a double-entry ledger, \
            vouchers, red packets, device services, and the developer sandbox's admin \
            endpoints.\n\nAmounts are `Money` in minor units; times are Unix milliseconds \
            (`*_ms`). Every error has the body `ErrorBody` with a stable `code` \
            (`ErrorCode`): match on the code, never on the message. Errors that any \
            endpoint may answer (`invalid_request`, `payload_too_large`, `rate_limited`, \
            `internal`, `unavailable`) are listed on every operation.",
        license(name = "GPL-3.0-or-later", identifier = "GPL-3.0-or-later"),
    ),
    // Schemas referenced only from query parameters, which utoipa does not collect.
    components(schemas(ErrorBody, ErrorCode, VoucherKind, VoucherState)),
    modifiers(&Security),
    tags(
        (name = "orders", description = "The TV's orders and the payments of them"),
        (name = "phone", description = "Pay by phone number with a texted code"),
        (name = "accounts", description = "Payers: sessions, balances, receipts"),
        (name = "merchants", description = "Merchant back ends, with a merchant key"),
        (name = "vouchers", description = "Payer-made QR e-cash vouchers"),
        (name = "packets", description = "Red packets"),
        (name = "devices", description = "Device register, refunds and updates, with a device credential"),
        (name = "ledger", description = "Ledger checks"),
        (name = "webhooks", description = "Merchant webhook endpoints and their delivery logs (admin)"),
        (name = "admin", description = "The sandbox's developer endpoints, with the admin token"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The bearer tokens the API takes, one scheme each so operations say which.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("session", "A session token from `POST /v1/sessions`."),
            (
                "admin",
                "The server's admin token (`--admin-token`); the admin endpoints are off without one.",
            ),
            (
                "device",
                "A device credential from `POST /v1/admin/devices/{id}/credential`.",
            ),
            (
                "merchant_key",
                "A merchant API key from `POST /v1/admin/merchants/{id}/keys`.",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// Status and codes of the errors every endpoint may answer (bad input, overload).
const COMMON: &[(&str, &[ErrorCode])] = &[
    ("400", &[ErrorCode::InvalidRequest]),
    ("413", &[ErrorCode::PayloadTooLarge]),
    ("429", &[ErrorCode::RateLimited]),
    ("500", &[ErrorCode::Internal]),
    ("503", &[ErrorCode::Unavailable]),
];

/// A response's description: its codes, as `` `a`, `b` ``.
fn listed(codes: &[ErrorCode]) -> String {
    let codes: Vec<String> = codes.iter().map(|c| format!("`{}`", c.as_str())).collect();
    codes.join(", ")
}

/// Adds the errors any endpoint may answer to every operation that does not list them.
fn add_common_errors(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            add_common_errors_to(op);
        }
    }
}

fn add_common_errors_to(op: &mut Operation) {
    for (status, codes) in COMMON {
        let codes = listed(codes);
        match op.responses.responses.get_mut(*status) {
            Some(RefOr::T(response)) => {
                if !response.description.contains(codes.as_str()) {
                    response.description = format!("{}, {codes}", response.description);
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let response = ResponseBuilder::new()
                    .description(codes)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                ErrorBody::name(),
                            ))))
                            .build(),
                    )
                    .build();
                op.responses
                    .responses
                    .insert((*status).to_string(), RefOr::T(response));
            }
        }
    }
}

/// The documented part of the API: every `/v1` route, with its document.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::orders::router())
        .merge(crate::sessions::router())
        .merge(crate::phone::router())
        .merge(crate::accounts::router())
        .merge(crate::merchants::router())
        .merge(crate::vouchers::router())
        .merge(crate::packets::router())
        .merge(crate::devices::router())
        .merge(crate::offers::router())
        .merge(crate::testclock::router())
        .merge(crate::webhooks::router())
        .merge(crate::console::router())
        .merge(crate::web::router())
        .routes(routes!(document))
}

/// The OpenAPI document of [`api`], with the modifiers applied.
pub fn openapi() -> OpenApi {
    let (_, mut doc) = api().split_for_parts();
    // `split_for_parts` merged the handlers' paths after `ApiDoc`'s modifiers ran.
    add_common_errors(&mut doc);
    doc
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
)]
async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

static REFERENCE: LazyLock<String> = LazyLock::new(|| {
    let doc = serde_json::to_value(openapi()).expect("the OpenAPI document serialises");
    reference_html(&doc)
});

/// `GET /docs`: the API reference, rendered on the server from the OpenAPI document.
pub async fn reference() -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        REFERENCE.as_str(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    resp
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped text with `code` spans for backticks, as the document's descriptions use them.
fn prose(s: &str) -> String {
    esc(s)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.replace("\n\n", "<br><br>")
            }
        })
        .collect()
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A schema as a short type expression, with links to named schemas.
fn type_of(schema: &serde_json::Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        let parts: Vec<String> = variants.iter().map(type_of).collect();
        return parts.join(" | ");
    }
    if let Some(values) = schema["enum"].as_array() {
        let parts: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(text(v))))
            .collect();
        return parts.join(" | ");
    }
    let ty = match &schema["type"] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(ts) => ts.iter().map(text).collect::<Vec<_>>().join(" | "),
        _ => String::new(),
    };
    if ty == "array" {
        return format!("array of {}", type_of(&schema["items"]));
    }
    if ty.is_empty() {
        return "any".into();
    }
    esc(&ty)
}

fn schema_html(name: &str, schema: &serde_json::Value, out: &mut String) {
    out.push_str(&format!(
        "<section id=\"schema-{0}\"><h3>{0}</h3>",
        esc(name)
    ));
    if let Some(d) = schema["description"].as_str() {
        out.push_str(&format!("<p>{}</p>", prose(d)));
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().map(text).collect())
        .unwrap_or_default();
    if let Some(props) = schema["properties"].as_object() {
        out.push_str("<table><tr><th>Field</th><th>Type</th><th>Description</th></tr>");
        for (field, s) in props {
            let req = if required.contains(&field.as_str()) {
                " <span class=req>required</span>"
            } else {
                ""
            };
            out.push_str(&format!(
                "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td></tr>",
                esc(field),
                type_of(s),
                prose(text(&s["description"]))
            ));
        }
        out.push_str("</table>");
    } else if let Some(variants) = schema["oneOf"].as_array() {
        out.push_str("<p>One of:</p><ul>");
        for v in variants {
            let fields: Vec<String> = v["properties"]
                .as_object()
                .map(|p| {
                    p.iter()
                        .map(|(k, s)| format!("<code>{}</code>: {}", esc(k), type_of(s)))
                        .collect()
                })
                .unwrap_or_default();
            let shape = if fields.is_empty() {
                type_of(v)
            } else {
                format!("{{ {} }}", fields.join(", "))
            };
            let what = v["description"]
                .as_str()
                .map(|d| format!(" — {}", prose(d)))
                .unwrap_or_default();
            out.push_str(&format!("<li>{shape}{what}</li>"));
        }
        out.push_str("</ul>");
    } else {
        let pattern = schema["pattern"]
            .as_str()
            .map(|p| format!(", pattern <code>{}</code>", esc(p)))
            .unwrap_or_default();
        out.push_str(&format!("<p>Type: {}{pattern}</p>", type_of(schema)));
    }
    out.push_str("</section>");
}

fn operation_html(path: &str, method: &str, op: &serde_json::Value, out: &mut String) {
    let id = text(&op["operationId"]);
    out.push_str(&format!(
        "<section class=op id=\"op-{}\"><h3><span class=\"m m-{method}\">{}</span> <code>{}</code></h3><p>{}</p>",
        esc(id),
        method.to_uppercase(),
        esc(path),
        prose(text(&op["summary"]))
    ));
    if let Some(sec) = op["security"].as_array() {
        let names: Vec<String> = sec
            .iter()
            .filter_map(|s| s.as_object())
            .flat_map(|s| s.keys().map(|k| format!("<code>{}</code>", esc(k))))
            .collect();
        out.push_str(&format!(
            "<p class=auth>Authorization: Bearer token ({})</p>",
            names.join(", ")
        ));
    }
    if let Some(params) = op["parameters"].as_array() {
        out.push_str(
            "<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>Description</th></tr>",
        );
        for p in params {
            let req = if p["required"] == true {
                " <span class=req>required</span>"
            } else {
                ""
            };
            out.push_str(&format!(
                "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(&p["name"])),
                esc(text(&p["in"])),
                type_of(&p["schema"]),
                prose(text(&p["description"]))
            ));
        }
        out.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (mime, media) in content {
            out.push_str(&format!(
                "<p>Request body (<code>{}</code>): {}</p>",
                esc(mime),
                type_of(&media["schema"])
            ));
        }
    }
    out.push_str("<table><tr><th>Status</th><th>Body</th><th>Meaning</th></tr>");
    if let Some(responses) = op["responses"].as_object() {
        for (status, r) in responses {
            if is_common(status, text(&r["description"])) {
                continue;
            }
            let body: Vec<String> = r["content"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(mime, m)| {
                            if m["schema"].is_null() {
                                format!("<code>{}</code>", esc(mime))
                            } else {
                                format!("{} <small>{}</small>", type_of(&m["schema"]), esc(mime))
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                body.join("<br>"),
                prose(text(&r["description"]))
            ));
        }
    }
    out.push_str(
        "</table><p class=auth>And, like every endpoint, <a href=\"#common-errors\">the common errors</a>.</p></section>",
    );
}

/// Is this response one of [`COMMON`], as [`add_common_errors`] wrote it?
fn is_common(status: &str, description: &str) -> bool {
    COMMON
        .iter()
        .any(|(s, codes)| *s == status && listed(codes) == description)
}

/// The reference page: operations grouped by tag, then every schema.
pub fn reference_html(doc: &serde_json::Value) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>API reference · Couchpay</title><style>\
         :root{--ink:#1d2430;--muted:#5d6776;--line:#e3e7ee;--bg:#f5f7fa;--accent:#0b6bcb}\
         *{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:var(--ink);background:var(--bg)}\
         header{padding:.8rem 1.4rem;background:#14213d;color:#fff}header h1{margin:0;font-size:1.1rem}\
         header .brand{color:#ffd166;font-weight:700}header p{margin:.3rem 0 0;color:#c9d3e3}\
         header a{color:#9cc7ff}\
         .wrap{display:flex;align-items:flex-start}\
         nav{position:sticky;top:0;width:17rem;flex:none;max-height:100vh;overflow:auto;padding:1rem;font-size:.85rem}\
         nav h4{margin:.8rem 0 .2rem;color:var(--muted);text-transform:uppercase;font-size:.75rem}\
         nav a{display:block;color:var(--accent);text-decoration:none;padding:.05rem 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}\
         main{flex:1;min-width:0;padding:1rem 1.4rem 3rem;max-width:70rem}\
         h2{margin:1.6rem 0 .4rem;font-size:1.1rem}h2 small{color:var(--muted);font-weight:400}\
         section{background:#fff;border:1px solid var(--line);border-radius:.6rem;margin:0 0 .8rem;padding:.2rem .9rem .6rem}\
         h3{font-size:.95rem;margin:.6rem 0 .2rem}p{margin:.3rem 0}\
         table{border-collapse:collapse;width:100%;margin:.4rem 0;font-size:.85rem}\
         th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid var(--line)}\
         th{color:var(--muted);font-weight:600;font-size:.78rem}\
         code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f0f3f7;padding:0 .2rem;border-radius:.2rem}\
         a{color:var(--accent)}.req{color:#a55b00;font-size:.75rem}.auth{color:var(--muted)}small{color:var(--muted)}\
         .m{display:inline-block;min-width:3.6rem;text-align:center;border-radius:.3rem;color:#fff;font-size:.75rem;padding:.05rem .3rem}\
         .m-get{background:#127a3a}.m-post{background:#0b6bcb}.m-put{background:#a55b00}.m-delete{background:#b3261e}\
         </style></head><body>",
    );
    out.push_str(&format!(
        "<header><h1><span class=brand>Couchpay</span> API reference <small>{}</small></h1>\
         <p>Generated from the server's code. Machine-readable: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> (OpenAPI {}).</p></header>",
        esc(text(&doc["info"]["version"])),
        esc(text(&doc["openapi"]))
    ));
    let tags: Vec<(&str, &str)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| (text(&t["name"]), text(&t["description"])))
                .collect()
        })
        .unwrap_or_default();
    // (tag, path, method, operation) in document order.
    let mut ops = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "delete"] {
                let op = &item[method];
                if op.is_object() {
                    let tag = text(&op["tags"][0]);
                    ops.push((tag, path.as_str(), method, op));
                }
            }
        }
    }
    let mut nav = String::from("<nav>");
    let mut main = format!("<main><p>{}</p>", prose(text(&doc["info"]["description"])));
    main.push_str(
        "<section id=common-errors><h3>Errors any endpoint may answer</h3><table>\
         <tr><th>Status</th><th>Code</th></tr>",
    );
    for (status, codes) in COMMON {
        for code in *codes {
            main.push_str(&format!(
                "<tr><td>{status}</td><td><code>{}</code></td></tr>",
                code.as_str()
            ));
        }
    }
    main.push_str("</table></section>");
    for (tag, about) in &tags {
        let mine: Vec<_> = ops.iter().filter(|o| o.0 == *tag).collect();
        if mine.is_empty() {
            continue;
        }
        nav.push_str(&format!("<h4>{}</h4>", esc(tag)));
        main.push_str(&format!(
            "<h2 id=\"tag-{0}\">{0} <small>{1}</small></h2>",
            esc(tag),
            prose(about)
        ));
        for (_, path, method, op) in mine {
            nav.push_str(&format!(
                "<a href=\"#op-{}\">{} {}</a>",
                esc(text(&op["operationId"])),
                method.to_uppercase(),
                esc(path)
            ));
            operation_html(path, method, op, &mut main);
        }
    }
    nav.push_str("<h4>Schemas</h4>");
    main.push_str("<h2 id=schemas>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            nav.push_str(&format!("<a href=\"#schema-{0}\">{0}</a>", esc(name)));
            schema_html(name, schema, &mut main);
        }
    }
    nav.push_str("</nav>");
    main.push_str("</main>");
    out.push_str(&format!("<div class=wrap>{nav}{main}</div></body></html>"));
    out
}
