pub mod model;
pub mod series;
