//! Prometheus-style read endpoints over what canopy holds, so that people and tests can compare
//! canopy's view with Prometheus's own answers.
//!
//! `GET /api/v1/series?match[]=SELECTOR...` lists the series held that match any of the
//! selectors, in Prometheus's `/api/v1/series` body shape. `GET /api/v1/features` lists the
//! features with their expressions; `GET /api/v1/features/{name}` answers a feature's retained
//! evaluated values in the body shape of Prometheus's `query_range`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::features::FeatureSet;
use crate::features::history::FeatureHistory;
use crate::series::{Labels, Selection, Selector, SeriesStore};

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

pub(crate) async fn series(
    State(store): State<Arc<SeriesStore>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let mut selectors = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "match[]" {
            continue;
        }
        match promql_parser::parser::parse(&value) {
            Ok(promql_parser::parser::Expr::VectorSelector(vs)) => {
                selectors.extend(Selector::all_in(
                    &promql_parser::parser::Expr::VectorSelector(vs),
                ));
            }
            Ok(_) => return bad_request(format!("match[] {value:?} is not a series selector")),
            Err(e) => return bad_request(format!("match[] {value:?} does not parse: {e}")),
        }
    }
    if selectors.is_empty() {
        return bad_request("no match[] parameter: name at least one series selector".into());
    }
    let mut found: BTreeSet<Labels> = BTreeSet::new();
    let mut sel = Selection::default();
    for s in &selectors {
        store.select(s, i64::MIN, i64::MAX, &mut sel);
        found.extend(sel.iter().map(|(l, _)| (**l).clone()));
    }
    let data: Vec<Value> = found
        .iter()
        .map(|l| {
            Value::Object(
                l.iter()
                    .map(|(n, v)| (n.to_owned(), Value::from(v)))
                    .collect::<Map<_, _>>(),
            )
        })
        .collect();
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

#[derive(Clone)]
pub(crate) struct FeaturesApi {
    pub(crate) history: Arc<FeatureHistory>,
    pub(crate) features: FeatureSet,
}

pub(crate) async fn features(State(api): State<FeaturesApi>) -> Response {
    let data: Vec<Value> = api
        .features
        .features()
        .iter()
        .map(|f| json!({"name": f.name, "expr": f.plan.expr()}))
        .collect();
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

pub(crate) async fn feature_history(
    State(api): State<FeaturesApi>,
    Path(name): Path<String>,
) -> Response {
    if api.features.index_of(&name).is_none() {
        let known: Vec<&str> = api
            .features
            .features()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "status": "error",
                "errorType": "not_found",
                "error": format!("no feature named {name:?}; configured: {}", known.join(", ")),
            })),
        )
            .into_response();
    }
    let body = api.history.query_range_body(&name).unwrap_or_else(
        || json!({"status": "success", "data": {"resultType": "matrix", "result": []}}),
    );
    axum::Json(body).into_response()
}
