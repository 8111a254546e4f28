pub mod model;
pub mod promql;
pub mod series;
